"""The students of ``models/student.py`` in PyTorch, for ONNX export (``onnx_export.py``).

DMLP and MLP in eval mode, every norm of ``layers/normalization.py``, with the reference's
module and parameter names (TimeDistill's ``models/DMLP.py``), so that ``convert.to_torch``
fills them from a run's Flax variables. ``Scaled`` wraps one with the run's scaler: original
units in and out. torch is imported at the top: import this module only where torch is
installed (the ``torch`` or ``onnx`` extra).
"""

import torch
import torch.nn.functional as F
from torch import nn

REVIN_EPS = 1e-5  # layers/normalization.py's RevIN


class RevINAffine(nn.Module):
  """RevIN's affine pair (the reference always builds it; only ``norm='revin'`` reads it)."""

  def __init__(self, channels: int):
    super().__init__()
    self.affine_weight = nn.Parameter(torch.ones(channels))
    self.affine_bias = nn.Parameter(torch.zeros(channels))


class TorchStudent(nn.Module):
  """DMLP (``decomposition``) or MLP in eval mode: ``x [B, L, C]`` -> ``[B, H, C]``."""

  def __init__(self, seq_len, pred_len, channels, d_model, decomposition, moving_avg, norm):
    super().__init__()
    self.decomposition, self.moving_avg, self.norm = decomposition, moving_avg, norm
    branch = lambda: nn.ModuleList([nn.Linear(seq_len, d_model), nn.ReLU(),
                                    nn.Linear(d_model, pred_len)])
    self.Linear_Seasonal, self.bn1 = branch(), nn.BatchNorm1d(channels)
    if decomposition:
      self.Linear_Trend, self.bn2 = branch(), nn.BatchNorm1d(channels)
    self.revin_layer = RevINAffine(channels)

  def _trend(self, x):  # x: [B, L, C]; moving average, both ends repeated
    pad = (self.moving_avg - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], 1)
    return F.avg_pool1d(padded.transpose(1, 2), self.moving_avg, stride=1).transpose(1, 2)

  @staticmethod
  def _branch(layers, bn, x):  # x: [B, C, L] -> [B, C, H]
    return layers[2](torch.relu(bn(layers[0](x))))

  def forward(self, x):  # [B, L, C]
    affine = self.revin_layer
    if self.norm == "non-stationary":
      mean = x.mean(1, keepdim=True)
      x = x - mean
    elif self.norm == "revin":
      mean = x.mean(1, keepdim=True)
      std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + REVIN_EPS)
      x = (x - mean) / std * affine.affine_weight + affine.affine_bias
    if self.decomposition:
      trend = self._trend(x)
      out = (self._branch(self.Linear_Seasonal, self.bn1, (x - trend).transpose(1, 2))
             + self._branch(self.Linear_Trend, self.bn2, trend.transpose(1, 2)))
    else:
      out = self._branch(self.Linear_Seasonal, self.bn1, x.transpose(1, 2))
    pred = out.transpose(1, 2)  # [B, H, C]
    if self.norm == "non-stationary":
      pred = pred + mean
    elif self.norm == "revin":
      pred = ((pred - affine.affine_bias) / (affine.affine_weight + REVIN_EPS * REVIN_EPS)
              * std + mean)
    return pred


class Scaled(nn.Module):
  """The run's scaler around a model: original units in and out."""

  def __init__(self, model, mean, std, first_output: int):
    super().__init__()
    self.model, self.first = model, first_output
    self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
    self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

  def forward(self, x):  # [B, L, C] -> [B, H, C_out]
    pred = self.model((x - self.mean) / self.std)
    return pred[..., self.first:] * self.std[self.first:] + self.mean[self.first:]


def torch_student(restored) -> TorchStudent:
  """The restored run's student as a ``TorchStudent`` in eval mode, holding its weights."""
  from timedistill_jax.convert import to_torch

  model = restored.model
  module = TorchStudent(model.seq_len, model.pred_len, model.enc_in, model.d_model,
                        model.decomposition, model.moving_avg, model.norm)
  state = {k: torch.from_numpy(v) for k, v in to_torch(model, restored.variables).items()}
  module.load_state_dict(state, strict=False)  # BatchNorm's num_batches_tracked stays 0
  return module.eval()


def serving_module(restored, spec) -> Scaled:
  """``torch_student`` with the run's scaler: the module that is exported."""
  # The forecast columns are every channel (M, S) or the last (MS): a slice from the first.
  first = spec.output_index[0]
  return Scaled(torch_student(restored), spec.scaler_mean, spec.scaler_std, first).eval()
