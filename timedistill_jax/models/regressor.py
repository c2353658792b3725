"""The feature regressor: maps teacher features to the student's width (paper Eq. 5).

Reference: ``models/Regressor.py`` of LingFengGold/TimeDistill. It is trained jointly with the
student (same optimiser) and gets gradient only from the feature-level losses.
"""

import flax.linen as nn

from timedistill_jax.models.layers.linear import Linear


class Regressor(nn.Module):
  """Linear(d_in -> D) -> ReLU -> Linear(D -> D) over the last axis: ``[B, C, d_in] -> [B, C, D]``.

  The reference's default ``num_layers=2`` builds exactly these two layers; its extra-layer loop
  runs over ``range(1, num_layers - 2)``, so ``num_layers=3`` also gives two (hence no such field).
  """

  features: int

  @nn.compact
  def __call__(self, x):  # x: [B, C, d_in]
    h = nn.relu(Linear(self.features, name="fc1")(x))  # [B, C, D]
    return Linear(self.features, name="fc2")(h)  # [B, C, D]
