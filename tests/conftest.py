"""Shared test set-up: float64 by default (accuracy is asserted), a private reference cache."""

import os
import tempfile

import jax

jax.config.update("jax_enable_x64", True)
os.environ.setdefault("PDEJAX_CACHE", os.path.join(tempfile.gettempdir(), "pdejax-test-cache"))
