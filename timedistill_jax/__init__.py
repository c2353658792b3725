"""timedistill_jax: TimeDistill (arXiv 2502.15016) in JAX/Flax.

Cross-architecture distillation of long-term forecasters into a two-layer MLP student.
"""

from timedistill_jax.errors import (CheckpointError, ConfigError, DataError, NumericsError,
                                    TimeDistillError)

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ConfigError", "DataError", "NumericsError", "TimeDistillError",
           "__version__", "forecast"]


def __getattr__(name):
  """``timedistill_jax.forecast(workdir, frame)``, imported on first use: importing the package
  stays light (no pandas, Flax or Orbax until a forecast is asked for)."""
  if name == "forecast":
    import importlib

    return importlib.import_module("timedistill_jax.forecast")  # a callable module
  raise AttributeError(f"module 'timedistill_jax' has no attribute {name!r}")
