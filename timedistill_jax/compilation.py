"""The persistent compilation cache: repeated runs skip most of XLA's compile time.

A run compiles its step loop, its evaluation and (distillation) the teacher-cache pass; on a CPU
that is a few seconds a run, the same for every seed of a grid. JAX can keep compiled programs on
disk and reuse them when the same program comes again (same shapes, same flags, same jax
version): ``enable(directory)``, ``--compilation_cache=DIR`` on the command line, or JAX's own
``JAX_COMPILATION_CACHE_DIR``. The experiments turn it on by default in ``default_directory()``.
"""

import os
from pathlib import Path

import jax

from timedistill_jax.data.download import default_data_dir


def default_directory() -> Path:
  """``~/.cache/timedistill_jax/xla`` (``$XDG_CACHE_HOME`` respected)."""
  return default_data_dir() / "xla"


def enable(directory=None) -> Path:
  """Caches every compiled program in ``directory`` (default ``default_directory()``); call it
  before the first compilation. ``JAX_COMPILATION_CACHE_DIR``, when set, wins."""
  directory = Path(os.environ.get("JAX_COMPILATION_CACHE_DIR") or directory
                   or default_directory()).expanduser()
  directory.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(directory))
  # JAX caches only programs that took over a second to compile by default; on a small CPU a
  # run's programs take less, and all of them are worth keeping.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory
