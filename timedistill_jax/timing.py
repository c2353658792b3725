"""Wall-clock timing of jitted calls, shared by the trainer's report and the benchmarks."""

import contextlib
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


class PhaseClock:
  """Seconds spent in named phases of a run (compile, steps, evaluation, checkpoints, ...).

  ``with clock.phase("steps"): ...`` adds the block's wall time to ``seconds["steps"]``. Work
  dispatched asynchronously must be waited for inside the block to be counted there.
  """

  def __init__(self):
    self.seconds: dict[str, float] = {}
    self._inner: list[float] = []  # time of the phases nested in each open one

  @contextlib.contextmanager
  def phase(self, name: str):
    """A phase opened inside another (compilation at a step's first call) is counted in its
    own name only."""
    t = time.perf_counter()
    self._inner.append(0.0)
    try:
      yield
    finally:
      spent = time.perf_counter() - t
      inner = self._inner.pop()
      self.seconds[name] = self.seconds.get(name, 0.0) + spent - inner
      if self._inner:
        self._inner[-1] += spent

  def report(self, total: float) -> dict:
    """The phases in seconds, plus ``other``: ``total`` less all of them."""
    out = {k: round(v, 4) for k, v in sorted(self.seconds.items())}
    out["other"] = round(total - sum(self.seconds.values()), 4)
    out["total"] = round(total, 4)
    return out
