"""ONNX export of the students (``python -m timedistill_jax.export --format onnx``).

The run's student as a PyTorch module with its scaler (``torch_student.py``), so the ONNX graph
maps ``x [B, L, C]`` in original units to the forecast ``[B, H, C_out]`` in original units, like
the ``jax.export`` one (the students read no calendar features, so ``x`` is the only input).
``torch.onnx.export`` (the dynamo exporter, which needs ``onnxscript``) writes it with a dynamic
batch dimension. When ``onnxruntime`` is installed the file is run once against the JAX model
before it is written.

torch, onnx and onnxscript are the ``onnx`` extra (``pip install -e .[onnx]``), imported only
when an ONNX file is written; the checks below need none of them.
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


def export_onnx(restored, spec):
  """``(bytes, check)``: the ONNX model of the run's student with its scaler (batch dimension
  dynamic), and its largest difference from the JAX model (None without onnxruntime)."""
  import torch

  from timedistill_jax.torch_student import serving_module

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
