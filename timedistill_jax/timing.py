"""Wall-clock timing of jitted calls, shared by the trainer's report and the benchmarks."""

import time

import jax
import numpy as np


def median_ms(fn, *args, warmup: int = 3, repeats: int = 20) -> float:
  """Median milliseconds of ``fn(*args)``, each call waited for with ``block_until_ready``;
  the first ``warmup`` calls (compilation, caches) are not counted."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return 1000 * float(np.median(times))
