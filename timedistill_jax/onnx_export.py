"""ONNX export of the students (``python -m timedistill_jax.export --format onnx``).

The DMLP and MLP of ``models/student.py`` in PyTorch, eval mode only, with the reference's
parameter names, so that ``convert.to_torch`` fills them from a run's Flax variables; a wrapper
adds the run's scaler, so the ONNX graph maps ``x [B, L, C]`` in original units to the forecast
``[B, H, C_out]`` in original units, like the ``jax.export`` one (the students read no calendar
features, so ``x`` is the only input). ``torch.onnx.export`` (the dynamo exporter, which needs
``onnxscript``) writes it with a dynamic batch dimension. When ``onnxruntime`` is installed the
file is run once against the JAX model before it is written.

torch, onnx and onnxscript are the ``onnx`` extra (``pip install -e .[onnx]``); this module is
imported only for ``--format onnx``.
"""

import contextlib
import importlib.util
import io
import logging
import warnings

import numpy as np

from timedistill_jax.errors import ConfigError, NumericsError
from timedistill_jax.models import STUDENTS

PACKAGES = ("torch", "onnx", "onnxscript")
TOLERANCE = 1e-4  # max |ONNX - JAX| on the check batch, relative to the forecast's scale


def check_available() -> None:
  missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
  if missing:
    raise ConfigError(f"--format onnx needs {', '.join(PACKAGES)}; {', '.join(missing)} "
                      "not installed: pip install -e .[onnx] (or use --format jax).")


def check_model(name: str) -> None:
  if name not in STUDENTS:
    raise ConfigError(f"--format onnx exports the students ({', '.join(STUDENTS)}); this run's "
                      f"model is {name!r}: use --format jax, which exports every model.")


def _modules():
  """The torch modules, defined once torch is imported."""
  import torch
  import torch.nn.functional as F
  from torch import nn

  class RevINAffine(nn.Module):
    """RevIN's affine pair (the reference always builds it; only ``norm='revin'`` reads it)."""

    def __init__(self, channels: int):
      super().__init__()
      self.affine_weight = nn.Parameter(torch.ones(channels))
      self.affine_bias = nn.Parameter(torch.zeros(channels))

  class TorchStudent(nn.Module):
    """``models/student.py``'s DMLP (``decomposition``) or MLP, eval mode: ``x [B, L, C]`` ->
    ``[B, H, C]``, every norm of ``layers/normalization.py``."""

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
      if self.norm == "non-stationary":
        mean = x.mean(1, keepdim=True)
        x = x - mean
      elif self.norm == "revin":
        mean = x.mean(1, keepdim=True)
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
        x = (x - mean) / std * self.revin_layer.affine_weight + self.revin_layer.affine_bias
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
        weight, bias = self.revin_layer.affine_weight, self.revin_layer.affine_bias
        pred = (pred - bias) / (weight + 1e-10) * std + mean
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

  return TorchStudent, Scaled


def torch_student(restored):
  """The run's student as a ``TorchStudent`` in eval mode, holding its weights."""
  import torch

  from timedistill_jax.convert import to_torch

  model = restored.model
  student_cls, _ = _modules()
  module = student_cls(model.seq_len, model.pred_len, model.enc_in, model.d_model,
                       model.decomposition, model.moving_avg, model.norm)
  state = {k: torch.from_numpy(v) for k, v in to_torch(model, restored.variables).items()}
  module.load_state_dict(state, strict=False)  # BatchNorm's num_batches_tracked stays 0
  return module.eval()


def serving_module(restored, spec):
  """``torch_student`` with the run's scaler: the module that is exported."""
  _, scaled_cls = _modules()
  # The forecast columns are every channel (M, S) or the last (MS): a slice from the first.
  first = spec.output_index[0]
  return scaled_cls(torch_student(restored), spec.scaler_mean, spec.scaler_std, first).eval()


def export_onnx(restored, spec):
  """``(bytes, check)``: the ONNX model of the run's student with its scaler (batch dimension
  dynamic), and its largest difference from the JAX model (None without onnxruntime)."""
  import torch

  module = serving_module(restored, spec)
  x = torch.zeros(2, spec.seq_len, len(spec.columns))
  with warnings.catch_warnings(), _quiet("torch.onnx"):
    # The exporter reports optional packages it skips (torchvision) and its own deprecations.
    warnings.simplefilter("ignore")
    program = torch.onnx.export(module, (x,), input_names=["x"], output_names=["forecast"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                                verbose=False)
  buffer = io.BytesIO()
  program.save(buffer)
  blob = buffer.getvalue()
  check = None
  if importlib.util.find_spec("onnxruntime") is not None:
    check = check_onnx(blob, restored, spec)
  return blob, check


@contextlib.contextmanager
def _quiet(name: str):
  logger = logging.getLogger(name)
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def check_onnx(blob: bytes, restored, spec, batch: int = 3) -> float:
  """Runs the ONNX model with onnxruntime on a seeded batch and compares it with the JAX
  model; returns the largest difference, relative to the forecast's scale."""
  import onnxruntime

  from timedistill_jax.export import serving_fn

  rng = np.random.default_rng(0)
  c, f = len(spec.columns), spec.num_time_features
  x = (np.asarray(spec.scaler_mean) + np.asarray(spec.scaler_std)
       * rng.normal(size=(batch, spec.seq_len, c))).astype(np.float32)
  marks = (np.zeros((batch, spec.seq_len, f), np.float32),
           np.zeros((batch, spec.label_len + spec.pred_len, f), np.float32))
  want = np.asarray(serving_fn(restored, spec)(x, *marks))
  session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
  got = session.run(None, {"x": x})[0]
  error = float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))
  if not error <= TOLERANCE:
    raise NumericsError(f"the ONNX model differs from the JAX model by {error:.2g} (relative) on "
                        "a check batch; it was not written. Export with --format jax.")
  return error
