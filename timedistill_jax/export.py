r"""Exporting a finished run for serving: ``python -m timedistill_jax.export``.

  python -m timedistill_jax.export --workdir runs/dmlp --output exported/ \
      [--format jax|onnx] [--platforms cpu,cuda,tpu]

``--format jax`` (the default, any model) writes ``model.jaxexport``: the model in eval mode with
its weights and its scaler, serialised with ``jax.export`` for a batch of any size and lowered
for every platform of ``--platforms``. It takes ``(x [B, L, C], x_mark [B, L, F], y_mark
[B, S + H, F])``, ``x`` in original units and the marks TSLib's timeF features, and returns the
forecast ``[B, H, C_out]`` in original units. ``timedistill_jax.serving.load`` runs it with jax
and numpy alone.

``--format onnx`` (the DMLP and MLP students; needs the ``onnx`` extra) writes ``model.onnx``:
the same function of ``x`` alone (the students read no calendar features), built as a PyTorch
module from the run's weights (``onnx_export.py``) and exported with ``torch.onnx``.

Both write ``metadata.json``: columns, lengths, features mode and target, ``freq`` and the list of
time features with their formulas, the sampling interval, the scaler's mean and std per column,
the inputs' and output's shapes and the model file's sha256.
"""

import hashlib
import json
import os
from pathlib import Path
import sys

import numpy as np

from timedistill_jax.data.checks import interval_timedelta
from timedistill_jax.data.time_features import describe
from timedistill_jax import cli
from timedistill_jax.errors import ConfigError, DataError
from timedistill_jax.forecast import finished_run, load
from timedistill_jax.serving import METADATA_FILE, MODEL_FILE

FORMATS = ("jax", "onnx")
PLATFORMS = ("cpu", "cuda", "tpu")
ONNX_FILE = "model.onnx"


def serving_fn(restored, spec):
  """``(x, x_mark, y_mark) -> forecast``, in original units on both sides (float32)."""
  model, variables = restored.model, restored.variables
  mean = np.asarray(spec.scaler_mean, np.float32)  # [C]
  std = np.asarray(spec.scaler_std, np.float32)
  index = np.asarray(spec.output_index)

  def fn(x, x_mark, y_mark):
    pred, _ = model.apply(variables, (x - mean) / std, x_mark, y_mark, train=False)  # [B, H, C]
    return pred[..., index] * std[index] + mean[index]  # [B, H, C_out]

  return fn


def export_jax(restored, spec, platforms=PLATFORMS) -> bytes:
  """The serialised ``jax.export`` of ``serving_fn`` with a symbolic batch dimension."""
  import jax

  batch = jax.export.symbolic_shape("batch")[0]
  f = max(spec.num_time_features, 0)
  args = [jax.ShapeDtypeStruct(shape, np.float32) for shape in (
      (batch, spec.seq_len, len(spec.columns)), (batch, spec.seq_len, f),
      (batch, spec.label_len + spec.pred_len, f))]
  exported = jax.export.export(jax.jit(serving_fn(restored, spec)),
                               platforms=tuple(platforms))(*args)
  return bytes(exported.serialize())


def metadata(spec, *, fmt: str, model_file: str, digest: str, platforms=()) -> dict:
  """What a server needs besides the model file (docs/deploy.md)."""
  f = spec.num_time_features
  inputs = {"x": ["batch", spec.seq_len, len(spec.columns)]}
  if fmt == "jax":
    inputs |= {"x_mark": ["batch", spec.seq_len, f],
               "y_mark": ["batch", spec.label_len + spec.pred_len, f]}
  return {
      "format": {"jax": "jax.export", "onnx": "onnx"}[fmt],
      "model": spec.model,
      "kind": spec.kind,
      "columns": list(spec.columns),
      "output_columns": list(spec.output_columns),
      "seq_len": spec.seq_len,
      "label_len": spec.label_len,
      "pred_len": spec.pred_len,
      "features": spec.features,
      "target": spec.target,
      "freq": spec.freq,
      # TSLib timeF, in column order; none when the run had no marks (Solar)
      "time_features": describe(spec.freq) if f else [],
      "interval": spec.interval,
      "interval_seconds": int(interval_timedelta(spec.interval).total_seconds()),
      "scaler_mean": list(spec.scaler_mean),  # per column of "columns"
      "scaler_std": list(spec.scaler_std),
      "inputs": inputs,  # float32, x in original units, marks as "time_features"
      "output": ["batch", spec.pred_len, len(spec.output_columns)],  # original units
      "platforms": list(platforms),
      "sha256": {model_file: digest},
  }


def _write(path: Path, data: bytes) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_bytes(data)
  os.replace(tmp, path)


def check_format(fmt: str, platforms) -> None:
  """Refuses an unknown format or platform, and ONNX without its packages, before any work."""
  if fmt not in FORMATS:
    raise ConfigError(f"unknown export format {fmt!r}; valid choices: {', '.join(FORMATS)}.")
  bad = [p for p in platforms if p not in PLATFORMS]
  if bad or not platforms:
    raise ConfigError(f"unknown platform(s) {', '.join(map(repr, bad))}; --platforms takes a "
                      f"comma-separated list of {', '.join(PLATFORMS)}.")
  if fmt == "onnx":
    from timedistill_jax.onnx_export import check_available
    check_available()


def export_run(workdir, output, *, fmt: str = "jax", platforms=PLATFORMS) -> dict:
  """Writes the finished run in ``workdir`` to the folder ``output``; returns the metadata."""
  platforms = tuple(platforms)
  check_format(fmt, platforms)
  finished_run(workdir)
  output = Path(output)
  if output.exists() and not output.is_dir():
    raise DataError(f"--output {output} is a file; pass a folder to write the model into.")

  def check(spec):
    if fmt == "onnx":
      from timedistill_jax.onnx_export import check_model
      check_model(spec.model)

  restored, spec = load(workdir, check=check)
  output.mkdir(parents=True, exist_ok=True)
  if fmt == "jax":
    model_file, blob, check = MODEL_FILE, export_jax(restored, spec, platforms), None
  else:
    from timedistill_jax.onnx_export import export_onnx
    (blob, check), model_file, platforms = export_onnx(restored, spec), ONNX_FILE, ()
  meta = metadata(spec, fmt=fmt, model_file=model_file, platforms=platforms,
                  digest=hashlib.sha256(blob).hexdigest())
  if check is not None:  # onnxruntime against the JAX model on a check batch
    meta["onnxruntime_check"] = {"max_relative_difference": check}
  _write(output / model_file, blob)
  _write(output / METADATA_FILE, json.dumps(meta, indent=1).encode())
  return meta


# -- the command line -----------------------------------------------------------------------------

USAGE = ("usage: python -m timedistill_jax.export --workdir RUN --output DIR "
         "[--format jax|onnx] [--platforms cpu,cuda,tpu]")


def _run(argv) -> str:
  parser = cli.Parser("python -m timedistill_jax.export", USAGE)
  parser.add_argument("--workdir", required=True, help="the folder of a finished run")
  parser.add_argument("--output", required=True, help="folder to write the model into")
  parser.add_argument("--format", default="jax", help="jax (any model) or onnx (students)")
  parser.add_argument("--platforms", default=",".join(PLATFORMS),
                      help="jax format: platforms to lower for")
  args = parser.parse_args(argv)
  platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
  meta = export_run(args.workdir, args.output, fmt=args.format, platforms=platforms)
  model_file = next(iter(meta["sha256"]))
  size = (Path(args.output) / model_file).stat().st_size
  size = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 1024:.0f} KiB"
  shapes = ", ".join(f"{k} {v}" for k, v in meta["inputs"].items()).replace("'", "")
  checked = meta.get("onnxruntime_check", {}).get("max_relative_difference")
  checked = "" if checked is None else f"; onnxruntime matches JAX to {checked:.1e}"
  return (f"wrote {Path(args.output) / model_file} ({size}, {meta['model']}: "
          f"{shapes} -> {meta['output']}".replace("'", "") +
          f"{checked}) and {Path(args.output) / METADATA_FILE}")


def main(argv=None) -> int:
  """The command line; every user error is one line ``error: ...`` and exit status 2."""
  return cli.main(_run, argv, "export")


if __name__ == "__main__":
  sys.exit(main())
