"""Fixtures shared by the estimator tests (see tests/README.md)."""
import pytest

import cprop._train


@pytest.fixture
def spy(monkeypatch):
    """Counts calls of the compiled fit loop (``_train.Runner.fit_epochs``, which
    ``cprop._fast_fit`` drives): a test asserts the loop it claims to test ran."""
    calls = []

    class Counting(cprop._train.Runner):
        def fit_epochs(self, *args, **kwargs):
            calls.append(1)
            return super().fit_epochs(*args, **kwargs)

    monkeypatch.setattr(cprop._train, "Runner", Counting)
    return calls
