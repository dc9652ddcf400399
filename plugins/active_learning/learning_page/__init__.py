"""The Learning page: a loop's days in the Airflow UI (a "Learning" tab on each DAG).

What each day of a loop did, read from Airflow's own records: the ``day_summary`` task's XCom
(:func:`active_learning.day_summary.summarize_day`'s record) and, when that is gone (a cleared
run), the same record on the manifest Asset event's ``extra``. Never from AWS.

- :mod:`.records`: the days from those records, and which review waits are late (pure);
- :mod:`.charts`: server-side SVG charts whose points carry their values (pure);
- :mod:`.page`: the HTML page (pure);
- :mod:`.store`: reading the records through the api-server's ORM session;
- :mod:`.app`: the FastAPI app, behind the api-server's own authentication.

``plugins/active_learning_plugin.py`` registers the app and the tab; it imports none of these
until the first request, so that loading plugins stays cheap everywhere else.
"""
