"""Shared test setup: no test may reach AWS; credentials are fake and the region fixed."""

from __future__ import annotations

import pytest


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
