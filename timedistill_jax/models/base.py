"""The base every forecaster shares: the sizes that come from the data, not from the config."""

import flax.linen as nn


class ForecastModel(nn.Module):
  """Fields filled by ``build_model`` from the data: input length L, decoder label length,
  horizon H and channel count C. Subclasses add their hyperparameters and ``feature_dim``."""

  seq_len: int
  label_len: int
  pred_len: int
  enc_in: int
