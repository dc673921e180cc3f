"""Shared test set-up: float64 by default (accuracy is asserted), a private reference cache, and a
compilation cache shared by the test processes."""

import os
import tempfile

# Many tests compile the same XLA programs again (a fresh Trainer per call, resumed runs, the CLI in
# subprocesses, two processes of one distributed run); JAX's persistent cache lets later ones load the
# executable. Set before jax is imported so that subprocesses inherit it through the environment.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "pdejax-test-jit-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
os.environ.setdefault("PDEJAX_CACHE", os.path.join(tempfile.gettempdir(), "pdejax-test-cache"))


@pytest.fixture(autouse=True)
def _keep_x64():
    # the CLI switches float64 off for float32 runs; every test starts (and ends) in float64
    yield
    jax.config.update("jax_enable_x64", True)


def pytest_collection_modifyitems(config, items):
    # the longest tests first: otherwise they sit at the end of the alphabetical order and one worker
    # runs them alone while the other idles
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
