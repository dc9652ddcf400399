# TEST-ONLY stand-in for redis:7.2-bookworm (see README.md here): Debian 12's Redis 7.0, for the
# CeleryExecutor variant (docker-compose.celery.yaml): the broker on 6379, redis-cli for the healthcheck.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/*
EXPOSE 6379
# as the official image: no config file, so no protected mode; reached only on the compose network
CMD ["redis-server", "--protected-mode", "no", "--save", ""]
