"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest


@pytest.fixture
def data_dir() -> Path:
  """The real benchmark files (``$TIMEDISTILL_DATA_DIR``); tests that need them skip without it."""
  value = os.environ.get("TIMEDISTILL_DATA_DIR")
  if not value:
    pytest.skip("TIMEDISTILL_DATA_DIR is not set; point it at the folder with ETTh1.csv(.gz), "
                "weather.csv(.gz) and partial/ to run the real-data tests.")
  return Path(value)
