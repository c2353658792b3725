"""Compact PyTorch versions of the student, the regressor, the iTransformer teacher and the
TimeDistill loss, written from the equations (docs/method.md, "Student", "Teachers and their
features" and "Loss") for ``experiments.compare_pytorch`` and its test. Not used by the
library.

Module and parameter names follow the reference code (TimeDistill's ``models/DMLP.py``,
``models/MLP.py``, ``models/Regressor.py``, Time-Series-Library's ``models/iTransformer.py``), so
``timedistill_jax.convert.to_torch`` fills them from Flax variables and ``from_torch`` reads them
back. The student has no ``.to('cuda')`` and the KL term gives 0 (not NaN) where a teacher
probability underflows to 0, as ours does (docs/pytorch.md, "The reference code on this
machine").
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

# The reference always builds RevIN's affine pair; the non-stationary norm never reads it.
from timedistill_jax.torch_student import RevINAffine


class Student(nn.Module):
  """DMLP (``decomposition=True``) or plain MLP, non-stationary norm: ``[B, L, C]`` ->
  ``(pred [B, H, C], hidden [B, C, D])``."""

  def __init__(self, seq_len, pred_len, channels, d_model=512, decomposition=True,
               moving_avg=25):
    super().__init__()
    self.decomposition, self.moving_avg = decomposition, moving_avg
    branch = lambda: nn.ModuleList([nn.Linear(seq_len, d_model), nn.ReLU(),
                                    nn.Linear(d_model, pred_len)])
    self.Linear_Seasonal = branch()
    self.bn1 = nn.BatchNorm1d(channels)
    if decomposition:
      self.Linear_Trend = branch()
      self.bn2 = nn.BatchNorm1d(channels)
    self.revin_layer = RevINAffine(channels)

  def _trend(self, x):  # x: [B, L, C]; moving average with the ends repeated
    pad = (self.moving_avg - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], 1)
    return F.avg_pool1d(padded.transpose(1, 2), self.moving_avg, stride=1).transpose(1, 2)

  @staticmethod
  def _branch(layers, bn, x):  # x: [B, C, L]
    hidden = layers[0](x)  # [B, C, D]
    return layers[2](torch.relu(bn(hidden))), hidden

  def forward(self, x):
    mean = x.mean(1, keepdim=True).detach()
    x = x - mean
    if self.decomposition:
      trend = self._trend(x)
      out_s, hid_s = self._branch(self.Linear_Seasonal, self.bn1, (x - trend).transpose(1, 2))
      out_t, hid_t = self._branch(self.Linear_Trend, self.bn2, trend.transpose(1, 2))
      out, hidden = out_s + out_t, hid_s + hid_t
    else:
      out, hidden = self._branch(self.Linear_Seasonal, self.bn1, x.transpose(1, 2))
    return out.transpose(1, 2) + mean, hidden


class Regressor(nn.Module):
  """Linear -> ReLU -> Linear over the last axis (the reference's ``num_layers=2``)."""

  def __init__(self, d_in, d_out):
    super().__init__()
    self.model = nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))

  def forward(self, x):
    return self.model(x)


# -- iTransformer --------------------------------------------------------------------------

class _Attention(nn.Module):
  def __init__(self, d_model, n_heads, dropout):
    super().__init__()
    self.n_heads, self.dropout = n_heads, nn.Dropout(dropout)
    self.query_projection = nn.Linear(d_model, d_model)
    self.key_projection = nn.Linear(d_model, d_model)
    self.value_projection = nn.Linear(d_model, d_model)
    self.out_projection = nn.Linear(d_model, d_model)

  def forward(self, x):  # x: [B, N, D]
    b, n, d = x.shape
    split = lambda t: t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)
    q, k, v = (split(p(x)) for p in (self.query_projection, self.key_projection,
                                     self.value_projection))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.n_heads)  # [B, heads, N, N]
    out = self.dropout(torch.softmax(scores, -1)) @ v
    return self.out_projection(out.transpose(1, 2).reshape(b, n, d))


class _EncoderLayer(nn.Module):
  """Post-norm layer with kernel-1 convolutions as the feed-forward (TSLib ``EncoderLayer``)."""

  def __init__(self, d_model, n_heads, d_ff, dropout):
    super().__init__()
    self.attention = _Attention(d_model, n_heads, dropout)
    self.conv1, self.conv2 = nn.Conv1d(d_model, d_ff, 1), nn.Conv1d(d_ff, d_model, 1)
    self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x):
    x = self.norm1(x + self.dropout(self.attention(x)))
    y = self.dropout(F.gelu(self.conv1(x.transpose(1, 2))))
    y = self.dropout(self.conv2(y).transpose(1, 2))
    return self.norm2(x + y)


class _Encoder(nn.Module):
  def __init__(self, e_layers, d_model, n_heads, d_ff, dropout):
    super().__init__()
    self.attn_layers = nn.ModuleList(
        [_EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(e_layers)])
    self.norm = nn.LayerNorm(d_model)

  def forward(self, x):
    for layer in self.attn_layers:
      x = layer(x)
    return self.norm(x)


class _Embedding(nn.Module):
  def __init__(self, seq_len, d_model, dropout):
    super().__init__()
    self.value_embedding = nn.Linear(seq_len, d_model)
    self.dropout = nn.Dropout(dropout)


class ITransformer(nn.Module):
  """``(x [B, L, C], x_mark [B, L, F])`` -> ``(pred [B, H, C], hidden [B, C, D])``."""

  def __init__(self, seq_len, pred_len, d_model=256, n_heads=8, e_layers=2, d_ff=256,
               dropout=0.1):
    super().__init__()
    self.enc_embedding = _Embedding(seq_len, d_model, dropout)
    self.encoder = _Encoder(e_layers, d_model, n_heads, d_ff, dropout)
    self.projection = nn.Linear(d_model, pred_len)

  def forward(self, x, x_mark):
    c = x.shape[-1]
    mean = x.mean(1, keepdim=True).detach()
    std = torch.sqrt(torch.var(x - mean, dim=1, keepdim=True, unbiased=False) + 1e-5)
    tokens = torch.cat([((x - mean) / std).transpose(1, 2), x_mark.transpose(1, 2)], 1)
    h = self.encoder(self.enc_embedding.dropout(self.enc_embedding.value_embedding(tokens)))
    hidden = h[:, :c]  # [B, C, D]: the variate tokens
    return self.projection(hidden).transpose(1, 2) * std + mean, hidden


# -- the TimeDistill loss (docs/method.md, "Loss") --------------------------------------------

def _scale_mse(a, b, num_scales=3):  # pooled along the last axis
  total = F.mse_loss(a, b)
  for _ in range(num_scales):
    a, b = F.avg_pool1d(a, 2), F.avg_pool1d(b, 2)
    total = total + F.mse_loss(a, b)
  return total / (num_scales + 1)


def _period_q(x, dim, temperature=0.5):
  amp = torch.fft.rfft(x, dim=dim).abs()
  amp = amp.narrow(dim, 1, amp.shape[dim] - 1)  # DC bin dropped
  return torch.softmax(amp / temperature, dim=dim)


def _kl(q_t, q_s):
  """``F.kl_div(log(q_s + 1e-8), q_t, reduction='mean')`` with 0 where q_t is 0."""
  safe = torch.where(q_t > 0, q_t, torch.ones_like(q_t))
  terms = torch.where(q_t > 0, q_t * (torch.log(safe) - torch.log(q_s + 1e-8)),
                      torch.zeros_like(q_t))
  return terms.mean()


def timedistill_loss(pred_s, pred_t, hidden_s, hidden_t, y, alpha, beta, num_scales=3):
  """``pred_*, y: [B, H, C]``; ``hidden_*: [B, C, D]``. Returns ``(total, parts)``."""
  parts = {
      "sup": F.mse_loss(pred_s, y),
      "pred_scale": _scale_mse(pred_s.transpose(1, 2), pred_t.transpose(1, 2), num_scales),
      "pred_period": _kl(_period_q(pred_t, 1), _period_q(pred_s, 1)),
      "feat_scale": _scale_mse(hidden_s, hidden_t, num_scales),
      "feat_period": _kl(_period_q(hidden_t, 2), _period_q(hidden_s, 2)),
  }
  total = (parts["sup"] + alpha * (parts["pred_scale"] + parts["pred_period"])
           + beta * (parts["feat_scale"] + parts["feat_period"]))
  return total, parts
