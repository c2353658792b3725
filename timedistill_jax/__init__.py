"""timedistill_jax: TimeDistill (arXiv 2502.15016) in JAX/Flax.

Cross-architecture distillation of long-term forecasters into a two-layer MLP student.
"""

from timedistill_jax.errors import (CheckpointError, ConfigError, DataError, NumericsError,
                                    TimeDistillError)

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ConfigError", "DataError", "NumericsError", "TimeDistillError",
           "__version__"]
