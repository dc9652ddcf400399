# TEST-ONLY stand-in for apache/airflow:3.3.2-python3.11 (see README.md here), on the python stand-in.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dumb-init \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home airflow \
    && mkdir -p /opt/airflow/dags /opt/airflow/logs /opt/airflow/plugins \
    && chown -R airflow:0 /opt/airflow
# as in the official image: the airflow user owns AIRFLOW_HOME and its dags/, logs/, plugins/ (a new
# volume mounted there takes the owner) and where pip installs (here a venv first on PATH)
ENV AIRFLOW_HOME=/opt/airflow \
    AIRFLOW_USER_HOME_DIR=/home/airflow \
    PATH=/home/airflow/.venv/bin:/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER airflow
# the official image's providers that the project's compose files use: postgres (the metadata
# database's driver) and celery (docker-compose.celery.yaml). celery<5.7: the official image installs
# with Airflow's constraints; unconstrained, pip takes celery 5.7.0, which no longer has the
# celery.backends.database.retry that apache-airflow-providers-celery 3.26.0 imports (the worker dies)
RUN python -m venv /home/airflow/.venv \
    && pip install --no-cache-dir "apache-airflow[celery,postgres]==3.3.2" "celery<5.7"
COPY airflow-entrypoint.sh /entrypoint
WORKDIR /opt/airflow
EXPOSE 8080
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/entrypoint"]
CMD []
