"""Shared pytest fixtures, and a compilation cache for the whole session."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Most of the suite's time is XLA compiling the same small steps again: in every run() and in
# the subprocesses of the CLI, parallel and SIGKILL tests. A persistent compilation cache for
# the session (fresh each time, shared with subprocesses and pytest-xdist workers through the
# environment) compiles each of them once. Set before JAX is imported; a user's own
# JAX_COMPILATION_CACHE_DIR wins.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="timedistill-jax-test-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Several worker processes share a GPU when there is one: none may grab 75% of its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


@pytest.fixture
def data_dir() -> Path:
  """The real benchmark files (``$TIMEDISTILL_DATA_DIR``); tests that need them skip without it."""
  value = os.environ.get("TIMEDISTILL_DATA_DIR")
  if not value:
    pytest.skip("TIMEDISTILL_DATA_DIR is not set; point it at the folder with ETTh1.csv(.gz), "
                "weather.csv(.gz) and partial/ to run the real-data tests.")
  return Path(value)
