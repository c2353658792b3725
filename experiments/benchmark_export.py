r"""Inference latency of an exported student against the in-process model and PyTorch.

  python -m experiments.benchmark_export                     # a smoke DMLP on ETTh1's shape
  python -m experiments.benchmark_export --workdir runs/dmlp # any finished student run

Per batch size (1 and 32), median ms per forecast of:

* ``exported``: ``model.jaxexport`` loaded by ``timedistill_jax.serving`` (jax and numpy alone),
  called on numpy arrays in original units, scaling inside, as a server would call it;
* ``in-process``: the run's Flax model, ``jax.jit`` of ``model.apply`` on scaled inputs;
* ``PyTorch``: the reference student (``experiments.pytorch_models.Student``) holding the same
  weights (``convert.to_torch``), eval mode, ``torch.inference_mode``, on scaled inputs, with
  ``--threads`` threads and with one (OpenMP's threads lose most when the CPU is shared);
* ``ONNX Runtime``: ``model.onnx`` (``--format onnx``), when the onnx extra is installed.

The runners alternate in rounds on the same ETTh1 test windows (synthetic ones without the file),
so that bursts of background load fall on all alike, with an untimed pause before each runner's
calls (``--pause``) so that the threads of the one before stop spinning; the load average before
and after is printed. The weights do not change the timing, so a smoke run serves. Writes
``results/benchmark_export_<platform>.md``.
"""

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from experiments.compare_pytorch import interleaved_medians
from timedistill_jax import serving
from timedistill_jax.data import load_dataset
from timedistill_jax.errors import DataError
from timedistill_jax.export import export_run
from timedistill_jax.forecast import load, scale

GOAL_B1_MS = 0.1


def smoke_run(workdir: Path, model: str) -> str:
  """A smoke run of ``model`` at ETTh1's shape (L 720, H 96); returns the data it used."""
  from timedistill_jax.configs import student
  from timedistill_jax.run import run

  config = student.get_config(f"dataset=etth1,model={model},smoke=True")
  config.train.progress = False
  try:
    run(config, workdir)
    return "ETTh1"
  except DataError:
    config.data.name = "synthetic"
    run(config, workdir / "synthetic")
    return "synthetic series (ETTh1 not found)"


def windows(meta: dict, spec, batch: int):
  """``batch`` test windows in original units: ``(x, x_mark, y_mark)`` float32."""
  try:
    splits = load_dataset("etth1", seq_len=spec.seq_len, label_len=spec.label_len,
                          pred_len=spec.pred_len)
  except DataError:
    splits = load_dataset("synthetic", seq_len=spec.seq_len, label_len=spec.label_len,
                          pred_len=spec.pred_len)
  b = splits.test.get_batch(np.linspace(0, len(splits.test) - 1, batch).astype(int))
  x = b["x"].astype(np.float64) * np.asarray(meta["scaler_std"]) + np.asarray(meta["scaler_mean"])
  return x.astype(np.float32), b["x_mark"].astype(np.float32), b["y_mark"].astype(np.float32)


def runners(restored, spec, exported_dir: Path, onnx_dir, batch: int, threads: int) -> dict:
  import torch

  from experiments.pytorch_models import Student
  from timedistill_jax.convert import to_torch

  fn, meta = serving.load(exported_dir)
  x, x_mark, y_mark = windows(meta, spec, batch)
  scaled = scale(spec, x.astype(np.float64))  # [B, L, C] float32
  model, variables = restored.model, restored.variables
  apply = jax.jit(lambda a, b, c: model.apply(variables, a, b, c, train=False)[0])
  reference = Student(model.seq_len, model.pred_len, model.enc_in, model.d_model,
                      decomposition=model.decomposition, moving_avg=model.moving_avg).eval()
  reference.load_state_dict({k: torch.from_numpy(v) for k, v in
                             to_torch(model, variables).items()}, strict=False)
  scaled_t = torch.from_numpy(scaled)

  def torch_call(threads):
    def call():
      torch.set_num_threads(threads)  # a no-op but for the first call of a round
      with torch.inference_mode():
        return reference(scaled_t)[0]
    return call

  out = {"exported (jax.export)": lambda: fn(x, x_mark, y_mark).block_until_ready(),
         "in-process (jit apply)": lambda: apply(scaled, x_mark, y_mark).block_until_ready()}
  out |= {f"PyTorch reference, {n} thread{'s' * (n > 1)}": torch_call(n)
          for n in sorted({threads, 1}, reverse=True)}
  if onnx_dir is not None:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    out["ONNX Runtime"] = lambda: session.run(None, {"x": x})
  # The exported model's forecast against the in-process one's, un-scaled: the same numbers.
  want = np.asarray(apply(scaled, x_mark, y_mark), np.float64)
  want = want * np.asarray(meta["scaler_std"]) + np.asarray(meta["scaler_mean"])
  diff = float(np.max(np.abs(np.asarray(fn(x, x_mark, y_mark)) - want)))
  print(f"batch {batch}: max |exported - in-process| = {diff:.2e} (original units)")
  return out


def report(setting: str, rows: dict, loads: tuple) -> str:
  names = list(next(iter(rows.values())))
  lines = ["# Exported inference: latency", "",
           "`python -m experiments.benchmark_export` (issue 51). " + setting + ".", "",
           f"Load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f}. The runners "
           "alternate in rounds on the same windows; median ms per forecast of a batch.", "",
           "| batch | " + " | ".join(names) + " |", "| --- " * (len(names) + 1) + "|"]
  for batch, row in rows.items():
    lines.append(f"| {batch} | " + " | ".join(f"{row[n]:.3f}" for n in names) + " |")
  b1, b32 = rows.get(1, {}), rows.get(32, {})
  exp = "exported (jax.export)"
  if b1 and b32:
    best = min(v for k, v in b32.items() if k.startswith("PyTorch"))
    lines += ["", f"Goals: batch 1 under {GOAL_B1_MS} ms: {b1[exp]:.3f} ms "
              f"({'met' if b1[exp] < GOAL_B1_MS else 'not met'}); batch 32 at or under "
              f"PyTorch's best: {b32[exp]:.3f} vs {best:.3f} ms "
              f"({'met' if b32[exp] <= best else 'not met'})."]
  if max(loads) > os.cpu_count():
    lines += ["", "The load average exceeded the number of cores: other jobs shared the CPU."]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default="", help="a finished student run (default: a smoke "
                      "run at ETTh1's shape)")
  parser.add_argument("--model", default="dmlp", help="dmlp or mlp, for the smoke run")
  parser.add_argument("--batches", default="1,32")
  parser.add_argument("--rounds", type=int, default=20)
  parser.add_argument("--calls", type=int, default=50, help="calls per runner and round")
  parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
  parser.add_argument("--pause", type=float, default=0.2,
                      help="untimed seconds before each runner's calls in a round")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  if importlib.util.find_spec("torch") is None:
    print("the PyTorch reference needs torch: pip install -e .[torch]")
    return 1
  import torch

  torch.set_num_threads(args.threads)
  tmp = Path(tempfile.mkdtemp(prefix="benchmark-export-"))
  workdir, source = (Path(args.workdir), "the run in --workdir") if args.workdir else (
      tmp / "run", None)
  if source is None:
    source = smoke_run(workdir, args.model)
    workdir = workdir if (workdir / "results.json").exists() else workdir / "synthetic"
  export_run(workdir, tmp / "jax")
  onnx_dir = None
  if all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime")):
    export_run(workdir, tmp / "onnx", fmt="onnx")
    onnx_dir = tmp / "onnx"
  restored, spec = load(workdir)
  loads, rows = [os.getloadavg()[0]], {}
  for batch in (int(b) for b in args.batches.split(",")):
    calls = max(1, args.calls if batch == 1 else args.calls // 5)
    rows[batch] = interleaved_medians(
        runners(restored, spec, tmp / "jax", onnx_dir, batch, args.threads), args.rounds, calls,
        pause_s=args.pause)
    print(batch, {k: f"{v:.3f} ms" for k, v in rows[batch].items()})
  loads.append(os.getloadavg()[0])
  dev = jax.devices()[0]
  m = restored.model
  setting = (f"{spec.model} of {source}: L={spec.seq_len}, H={spec.pred_len}, C={m.enc_in}, "
             f"d_model={m.d_model}; jax {jax.__version__} on {dev.platform} ({dev.device_kind}), "
             f"torch {torch.__version__} ({args.threads} and 1 thread)"
             + (f", onnxruntime {importlib.import_module('onnxruntime').__version__} "
                f"({args.threads} threads)"
                if onnx_dir else "")
             + f"; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})")
  text = report(setting, rows, tuple(loads))
  out = Path(args.out or f"results/benchmark_export_{dev.platform}.md")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
