"""The reference settings (``common``), the paper's grids (``sweeps``) and the three run configs.

``get_config(name, arg)`` builds a run config by its bare name, as the command line does for
``--config student:dataset=etth1``; the files under the repository's ``configs/`` call the same
functions.
"""

import importlib
from pathlib import Path

from timedistill_jax.errors import unknown_name

NAMES = ("student", "teacher", "distill")


def config_file(name: str) -> str:
  """The path of the package's ``get_config`` file for a bare config name."""
  if name not in NAMES:
    raise unknown_name("config name", name, NAMES)
  return str(Path(__file__).with_name(f"{name}.py"))


def get_config(name: str, arg: str | None = None):
  """``get_config(arg)`` of the named run config (``student``, ``teacher`` or ``distill``)."""
  config_file(name)  # refuses an unknown name with the valid ones
  return importlib.import_module(f"timedistill_jax.configs.{name}").get_config(arg)
