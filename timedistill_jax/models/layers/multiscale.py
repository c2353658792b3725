"""Multi-scale down-sampling of a series (TimeMixer's ``__multi_scale_process_inputs``).

Scale 0 is the input; scale i + 1 pools scale i over non-overlapping windows of ``window`` steps
(``AvgPool1d(window)`` / ``MaxPool1d(window)``: a trailing remainder is dropped). The calendar
features of scale i are every ``window**i``-th row of the input's (``x_mark[:, ::window]`` at each
step, so their length rounds up where the series' rounds down: equal when ``window**layers``
divides L).
"""

import jax.numpy as jnp

from timedistill_jax.errors import unknown_name

POOLS = {"avg": jnp.mean, "max": jnp.max}


def pool_time(x, window: int, method: str = "avg"):
  """``x: [B, T, C]`` -> ``[B, T // window, C]``, pooled over non-overlapping windows."""
  if method not in POOLS:
    raise unknown_name("down_sampling_method", method, POOLS)
  steps = x.shape[1] // window
  blocks = x[:, :steps * window].reshape(x.shape[0], steps, window, *x.shape[2:])
  return POOLS[method](blocks, axis=2)


def multi_scale(x, x_mark, window: int, layers: int, method: str = "avg"):
  """``x: [B, L, C]``, ``x_mark: [B, L, F]`` or None -> lists of ``layers + 1`` scales each."""
  xs, marks = [x], [x_mark]
  for _ in range(layers):
    xs.append(pool_time(xs[-1], window, method))
    marks.append(None if x_mark is None else marks[-1][:, ::window])
  return xs, marks
