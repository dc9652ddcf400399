"""The host name a Celery worker of ``make airflow EXECUTOR=celery`` reports for its task instances.

Both workers run on one machine: Airflow's default (the FQDN) would give their task instances one
``hostname``. Each worker's ``STACK_WORKER_HOSTNAME`` (``AIRFLOW__CORE__HOSTNAME_CALLABLE`` names
this function) tells them apart in the UI and the REST API. Kept apart from ``tools.stack`` so that
every task's supervisor imports only this.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("STACK_WORKER_HOSTNAME") or socket.getfqdn()
