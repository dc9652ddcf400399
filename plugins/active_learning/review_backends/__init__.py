"""The review backends other than A2I, chosen at run time by the ``review_backend`` setting.

The DAG has one task graph whichever backend reviews (a Param cannot change the graph at parse
time): the A2I operators keep their A2I code and hand a run whose settings name another backend
to its step here, which uses that backend's hook.
"""
