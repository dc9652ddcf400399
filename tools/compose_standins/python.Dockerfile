# TEST-ONLY stand-in for python:3.11-slim (see README.md here): Debian 12's Python 3.11 in a venv.
ARG BASE
FROM ${BASE}
# the host's extra CAs (a TLS-inspecting proxy's, if any): pip here must trust what the host trusts
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local/python
# python:3.11-slim has python and pip first on PATH, installing where it runs (here: the venv)
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1
CMD ["python"]
