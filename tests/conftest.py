"""Shared test set-up: float64 by default (accuracy is asserted), a private reference cache, and a
compilation cache shared by the test processes."""

import os
import tempfile

# Many tests compile the same XLA programs again (a fresh Trainer per call, resumed runs, the CLI in
# subprocesses, two processes of one distributed run); JAX's persistent cache lets later ones load the
# executable. Set before jax is imported so that subprocesses inherit it through the environment.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "pdejax-test-jit-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# Most tests run small programs once, so XLA's compile time dominates them; LLVM's optimisation passes
# are much of it on CPU. Level 1 (with the references' single-pass checks) took the suite from 12.6 to
# 11.1 minutes on 2 cores; level 0 (10 min) slows the tests that run long programs 2-4x and moved a
# Levenberg-Marquardt solve's stopping point enough to break a finite-difference check, so it is not
# used. PDEJAX_TEST_XLA_OPT=2 restores XLA's default.
# The CPU backend's newer fusion emitters and its parallel code generation (one LLVM module split in
# parts) both cost compile time that these small programs never earn back: with them off the suite's
# CPU time on empty caches fell from 24 to 17 minutes (13 min 18 s to 9 min 33 s wall; jaxlib 0.10,
# 2 cores). Library runs keep XLA's defaults; PDEJAX_TEST_XLA_FAST_COMPILE=0 restores them here too.
_OPT_FLAG = f"--xla_backend_optimization_level={os.environ.get('PDEJAX_TEST_XLA_OPT', '1')}"
_FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"
if "PDEJAX_TEST_XLA_FAST_COMPILE" not in os.environ:
    # an XLA that does not know a flag aborts the process, so probe once (the test workers and
    # subprocesses inherit the answer through the environment)
    import subprocess
    import sys

    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.jit(lambda x: x + 1)(1.0)"],
        env={**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}", "JAX_PLATFORMS": "cpu"},
        capture_output=True,
    )
    os.environ["PDEJAX_TEST_XLA_FAST_COMPILE"] = "1" if probe.returncode == 0 else "0"
if os.environ["PDEJAX_TEST_XLA_FAST_COMPILE"] != "0":
    _OPT_FLAG += f" {_FAST_COMPILE}"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_OPT_FLAG}".strip()


import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
os.environ.setdefault("PDEJAX_CACHE", os.path.join(tempfile.gettempdir(), "pdejax-test-cache"))


@pytest.fixture
def float32():
    """Run a test in float32 (the CLI's default precision), restoring float64 after it."""
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True)
def _keep_x64():
    # the CLI switches float64 off for float32 runs; every test starts (and ends) in float64
    yield
    jax.config.update("jax_enable_x64", True)


def pytest_collection_modifyitems(config, items):
    # the longest tests first: otherwise they sit at the end of the alphabetical order and one worker
    # runs them alone while the other idles
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def forced_devices(n: int) -> str:
    """``XLA_FLAGS`` of a test subprocess with ``n`` forced CPU devices (keeping the suite's other flags)."""
    return f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={n}"


@pytest.fixture
def on_host_devices(tmp_path):
    """``run(script, **consts) -> {n: npz}``: ``script`` in fresh processes with 1 and with 4 forced CPU
    devices, side by side (each is mostly single-threaded compilation); it gets ``OUT`` (the ``.npz`` to
    write) and ``consts`` as globals."""
    import subprocess
    import sys

    import numpy as np

    def run(script: str, **consts) -> dict:
        procs = {}
        for n in (1, 4):
            env = {**os.environ, "XLA_FLAGS": forced_devices(n), "JAX_PLATFORMS": "cpu"}
            head = "".join(f"{k} = {v!r}\n" for k, v in {"OUT": str(tmp_path / f"run{n}.npz"), **consts}.items())
            procs[n] = subprocess.Popen([sys.executable, "-c", head + script], env=env)
        assert all(p.wait() == 0 for p in procs.values())
        return {n: np.load(tmp_path / f"run{n}.npz") for n in procs}

    return run
