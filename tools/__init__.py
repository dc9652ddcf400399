"""Runnable tools around the package: the demo, the fault suite, the local Airflow stack, the seed
of the local AWS, the fault-injecting proxy, a local Label Studio and the learning plot."""
