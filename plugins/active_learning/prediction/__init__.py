"""The day's prediction, one module per job.

:mod:`~active_learning.prediction.realtime` reads each image and calls the endpoint;
:mod:`~active_learning.prediction.transform` runs the day's Batch Transform job and reads its output;
:mod:`~active_learning.prediction.day` predicts every object of the day with either, routes the whole
day and writes its files. ``BatchPredictOperator`` chooses the mode and waits for the job.
"""
