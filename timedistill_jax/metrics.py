"""Forecasting metrics over a whole split, accumulated as (sum, count).

Each eval batch returns error sums over its real (unmasked) windows; the host adds them in
float64. The result is the element mean over every window of the split, exactly what the
reference computes on the concatenated test predictions (``utils/metrics.py``), in the
standardised space.
"""

import numpy as np
import jax.numpy as jnp

METRICS = ("mse", "mae", "rmse", "mape", "mspe")


def batch_error_sums(pred, true, mask):
  """Sums of errors over the real windows of one batch. ``pred, true: [B, H, C]``, ``mask: [B]``."""
  pred = pred.astype(jnp.float32)
  true = true.astype(jnp.float32)
  w = mask.astype(jnp.float32)[:, None, None]
  err = pred - true
  rel = err / true  # inf where true == 0, as the reference's MAPE/MSPE
  return {
      "se": jnp.sum(w * err**2),
      "ae": jnp.sum(w * jnp.abs(err)),
      "ape": jnp.sum(jnp.where(w > 0, jnp.abs(rel), 0.0)),
      "spe": jnp.sum(jnp.where(w > 0, rel**2, 0.0)),
      "n": jnp.sum(jnp.broadcast_to(w, err.shape)),
      "windows": jnp.sum(w),
  }


class MetricAccumulator:
  """Adds batch error sums on the host and turns them into MSE, MAE, RMSE, MAPE, MSPE."""

  def __init__(self):
    self.sums = {"se": 0.0, "ae": 0.0, "ape": 0.0, "spe": 0.0, "n": 0.0, "windows": 0.0}

  def add(self, sums) -> None:
    for k, v in sums.items():
      self.sums[k] += float(np.asarray(v, dtype=np.float64))

  def result(self) -> dict:
    n = self.sums["n"]
    if n == 0:
      raise ValueError("no windows were evaluated")
    mse = self.sums["se"] / n
    return {"mse": mse, "mae": self.sums["ae"] / n, "rmse": float(np.sqrt(mse)),
            "mape": self.sums["ape"] / n, "mspe": self.sums["spe"] / n,
            "windows": int(self.sums["windows"])}
