"""Shared test set-up: float64 by default (accuracy is asserted), a private reference cache."""

import os
import tempfile

import jax
import pytest

jax.config.update("jax_enable_x64", True)
os.environ.setdefault("PDEJAX_CACHE", os.path.join(tempfile.gettempdir(), "pdejax-test-cache"))


@pytest.fixture(autouse=True)
def _keep_x64():
    # the CLI switches float64 off for float32 runs; every test starts (and ends) in float64
    yield
    jax.config.update("jax_enable_x64", True)
