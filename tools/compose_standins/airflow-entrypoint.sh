#!/usr/bin/env bash
# TEST-ONLY (see README.md here): the official image's entrypoint dispatch, as far as the compose
# files use it: `bash ...` and `python ...` run as given, `airflow ...` or a bare subcommand runs airflow.
set -euo pipefail
case "${1:-}" in
  "") exec bash ;;
  bash | python) exec "$@" ;;
  airflow) shift; exec airflow "$@" ;;
  *) exec airflow "$@" ;;
esac
