"""Shared test setup: no test may reach AWS; credentials are fake and the region fixed."""

from __future__ import annotations

import pytest

# Session fixtures that start a server or run a day (seconds to minutes each), by the xdist group of
# the tests that use them: under ``pytest -n`` (make test runs 2 workers) those tests run on one
# worker, so that each fixture is set up once. Any other test runs with the rest of its file; a test
# module that asks for one of these fixtures at run time (``request.getfixturevalue``) names its
# group itself (``pytestmark = pytest.mark.xdist_group(...)``).
SHARED_SESSION_FIXTURES = {
    "stack": "stack",  # tests/system: one make-airflow stack, its backfill
    "backfill": "stack",
    "end_to_end_day": "end_to_end_day",
    "label_studio": "label_studio",
}


@pytest.fixture(autouse=True)
def _fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def pytest_configure(config: pytest.Config) -> None:
    """Load each botocore service model once per test session, not once per client.

    Most of the suite's time went into botocore re-reading the large SageMaker model for every
    new client; the files do not change while the tests run.
    """
    import functools

    from botocore import loaders

    original = loaders.Loader.load_data_with_path
    loaded: dict[tuple[tuple[str, ...], str], object] = {}

    @functools.wraps(original)
    def load_data_with_path(self: loaders.Loader, name: str):  # type: ignore[no-untyped-def]
        key = (tuple(self.search_paths), name)
        if key not in loaded:
            loaded[key] = original(self, name)
        return loaded[key]

    loaders.Loader.load_data_with_path = load_data_with_path  # type: ignore[method-assign]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``xdist_group`` of each test, for ``--dist loadgroup`` (ignored without ``-n``)."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        fixtures = getattr(item, "fixturenames", ())
        shared = [group for name, group in SHARED_SESSION_FIXTURES.items() if name in fixtures]
        item.add_marker(pytest.mark.xdist_group(shared[0] if shared else item.nodeid.split("::")[0]))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail loudly if the group did not reach xdist's scheduler (it reads it from the test's id)."""
    if getattr(item.config.option, "loadgroup", False) and "@" not in item.nodeid:
        pytest.fail(
            "--dist loadgroup: the test's xdist_group is not in its id, so tests that share a fixture may "
            "run on different workers (pytest-dev/pytest-xdist#1386: a pytest newer than xdist supports?)",
            pytrace=False,
        )
