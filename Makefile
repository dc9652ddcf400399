# Everything installs into .venv/ from requirements*.txt; nothing is installed by hand.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Label Studio (the self-hosted review backend) has its own pinned tree: its own venv.
LS_VENV := .venv-label-studio
LS_STAMP := $(LS_VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := True

.PHONY: install test system-test stack-test compose-test lint demo chaos airflow airflow-stop bench experiment clean docs

install: $(STAMP) $(LS_STAMP)

# Reinstalls only when a requirements file changed.
$(STAMP): requirements.txt requirements-dev.txt emulator/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip check
	touch $(STAMP)

$(LS_STAMP): requirements-label-studio.txt
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet -r requirements-label-studio.txt
	$(LS_VENV)/bin/python -m pip check
	touch $(LS_STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collects no test: a broken test path, so a failure here, with a clear word.
# The stack-command tests (marker stack: each starts `make airflow`) run in make stack-test.
# TEST_WORKERS pytest processes (pytest-xdist; 0: one process): the tests sharing a server stay on one
# worker (tests/conftest.py), the rest go by file.
TEST_WORKERS ?= 2
test: install lint
	@$(BIN)/python -m pytest -m "not stack" -n $(TEST_WORKERS) --dist loadgroup; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no test; check testpaths in pyproject.toml" >&2; fi; \
	exit $$status

# docker-compose.yaml run for real (tools/compose_test.py, test-only): the base images (or, with no
# registry reachable, stand-ins built from Debian packages), the project's images built once each,
# `docker-compose up`, a backfill of the seeded days through the REST API that must succeed, `down -v`
# leaving nothing. Needs a Docker daemon and docker-compose 1.29 (.ci/run installs and starts them).
compose-test: install
	$(BIN)/python -m tools.compose_test $(COMPOSE_TEST_ARGS)

# The daily loop for several days on the embedded local AWS; artifacts in demo-output/.
# DEMO_ARGS passes options (make demo DEMO_ARGS="--world easy"; .venv/bin/python -m tools.demo --help).
demo: install
	$(BIN)/python -m tools.demo --output demo-output $(DEMO_ARGS)

# The standing fault suite: a clean run of seeded days, the same days through a fault-injecting
# proxy with a kill of every task, a failed day, and the lineage scenarios; prints the tables, fails
# when a goal is missed. CHAOS_ARGS passes options (make chaos CHAOS_ARGS="--scenarios lineage").
chaos: install
	$(BIN)/python -m tools.chaos --output chaos-output $(CHAOS_ARGS)

# The local AWS and a real local Airflow (api-server, scheduler, dag-processor, triggerer) with the
# demo's settings and seeded days; runs until `make airflow-stop` or Ctrl-C. Its home: airflow-stack/.
# LABEL_STUDIO=1: a local Label Studio on http://127.0.0.1:8081 reviews (you, in the browser).
# EXECUTOR=celery: PostgreSQL, Redis, the CeleryExecutor and two Celery workers (apt-get install postgresql redis-server).
# STACK_ARGS passes options (make airflow STACK_ARGS=--no-backfill; .venv/bin/python -m tools.stack up --help).
airflow: install
	$(BIN)/python -m tools.stack up $(if $(LABEL_STUDIO),--label-studio) $(if $(EXECUTOR),--executor $(EXECUTOR)) $(STACK_ARGS)

airflow-stop:
	$(BIN)/python -m tools.stack stop

# Only the system tests: the DAG through a real scheduler and triggerer (a 3-day backfill), its UI in
# headless Chromium, and the stack-command tests.
system-test: install
	$(BIN)/python -m pytest -m system -s  # -s: prints the backfill's wall time

# The recipes of docs/local-stack.md, each starting `make airflow` on free ports (CI runs them).
stack-test: install
	$(BIN)/python -m pytest -m stack

# The DAG file's parse cost over an empty DAG; then BatchPredictOperator against a zero-CPU S3 and
# endpoint stand-in: throughput vs the concurrency limit, memory; then a 10,000-image day in 1, 2 and 4
# shards (predict_shards) on 2 worker processes.
bench: install
	$(BIN)/python bench/bench_parse.py
	$(BIN)/python bench/bench_predict.py
	$(BIN)/python bench/bench_shards.py

# Selection strategies against random picks on three synthetic worlds; table, JSON and plot in experiment-output/.
experiment: install
	$(BIN)/python bench/experiment.py --output experiment-output

# docs/settings.md from the settings' fields (a test fails when it is stale).
docs: install
	$(BIN)/python -m tools.settings_doc

clean:
	rm -rf $(VENV) $(LS_VENV) .airflow .pytest_cache .ruff_cache demo-output chaos-output airflow-stack bench-output experiment-output .emulator.json .emulator.log
