r"""Steps per second of distill_step for 1, 2 and 4 devices under each parallel mode.

From the repository root:

  python -m experiments.benchmark_parallel --out runs/bench_parallel.json
  python -m experiments.benchmark_parallel --devices 1 --batch 256      # on a GPU machine

On a CPU the devices are fake (``--xla_force_host_platform_device_count``): they share the
machine's cores, so the figures show the overhead of each mode, not a speed-up. On a machine
with N accelerators, ``--devices N`` uses the real ones. Each device count runs in its own
process (the flag must be set before JAX starts). The step is the DMLP student distilled from
an iTransformer teacher (ETTh1 shapes, L=720, H=96, teacher run on every batch), global batch
``--batch``, ``--steps`` of them in one call on windows gathered on the device, as training runs
them.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

ROOT = Path(__file__).resolve().parent.parent  # the workers run from here, as this module


def measure(num_devices: int, batch: int, num_steps: int) -> dict:
  import functools

  import jax
  import ml_collections

  from timedistill_jax import parallel, runs, steps
  from timedistill_jax.configs import common
  from timedistill_jax.data import load_dataset
  from timedistill_jax.data.device import device_data, window_starts
  from timedistill_jax.models import build_model
  from timedistill_jax.models.regressor import Regressor
  from timedistill_jax.train_state import create_distill_state, make_optimizer

  L, H = 720, 96
  splits = load_dataset("synthetic", seq_len=L, label_len=48, pred_len=H)  # the ETTh1 shape
  dims = dict(seq_len=L, label_len=48, pred_len=H, enc_in=splits.num_channels)
  teacher_cfg = ml_collections.ConfigDict(dict(
      name="itransformer", **common.TEACHER_DEFAULTS["itransformer"],
      **common.TEACHER_MODEL["itransformer"]["etth1"]))
  teacher = build_model(teacher_cfg, **dims)
  sample = runs.sample_batch(splits)
  t_vars = teacher.init(jax.random.PRNGKey(1), sample["x"], sample["x_mark"], sample["y_mark"])
  optim = ml_collections.ConfigDict(dict(lr=0.01, schedule="type1", weight_decay=0.0))
  start, mask = window_starts(splits.train, 0, batch, shuffle=True, seed=0, epoch=0)
  start, mask = start[:num_steps], mask[:num_steps]
  out = {}
  modes = ["none"] if num_devices == 1 else []
  modes += ["pmap", "shard_map"]
  for mode in modes:
    par = parallel.DataParallel(mode)
    student = build_model(ml_collections.ConfigDict(dict(name="dmlp")), **dims,
                          axis_name=par.axis_name)
    state = create_distill_state(student, [teacher], make_optimizer(optim, 245, 100),
                                 jax.random.PRNGKey(0), sample)
    body = functools.partial(steps.distill_step, student=student, teachers=(teacher,),
                             regressor=Regressor(student.feature_dim),
                             loss=steps.LossConfig(1.0, 1.0), pred_len=H)
    loop = runs.loop_fn(par, body, device_data(splits), par.replicate([t_vars]))
    state = par.replicate(state)
    state, m = loop(state, start, mask, len(start))  # compiles
    jax.block_until_ready(m)
    # Throughput of the loop as training runs it: all the steps in one call, each taking the
    # state the last one returned.
    t = time.perf_counter()
    state, m = loop(state, start, mask, len(start))
    jax.block_until_ready(m)
    out[mode] = len(start) / (time.perf_counter() - t)
  return {"devices": num_devices, "platform": jax.devices()[0].platform,
          "steps_per_second": out}


def main(argv):
  del argv
  if _WORKER.value:
    print(json.dumps(measure(_WORKER.value, _BATCH.value, _STEPS.value)))
    return
  rows = []
  for n in map(int, _DEVICES.value):
    env = dict(os.environ)
    if _FAKE.value:
      env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
      env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-m", "experiments.benchmark_parallel",
                          f"--worker={n}", f"--batch={_BATCH.value}", f"--steps={_STEPS.value}"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
      raise SystemExit(out.stderr[-3000:])
    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
  lines = [f"distill_step (DMLP <- iTransformer, ETTh1 shapes), global batch {_BATCH.value}, "
           f"{rows[0]['platform']}{' (fake devices)' if _FAKE.value else ''}: steps per second",
           "", "| devices | none | pmap | shard_map |", "| --- | --- | --- | --- |"]
  for r in rows:
    s = r["steps_per_second"]
    cell = lambda k: f"{s[k]:.1f}" if k in s else "-"
    lines.append(f"| {r['devices']} | {cell('none')} | {cell('pmap')} | {cell('shard_map')} |")
  print("\n".join(lines))
  if _OUT.value:
    Path(_OUT.value).parent.mkdir(parents=True, exist_ok=True)
    Path(_OUT.value).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
  # The command's flags, defined only when it runs: the experiment modules are imported
  # together (tests, tools) and several flag names recur among them.
  _DEVICES = flags.DEFINE_list("devices", ["1", "2", "4"], "Device counts to measure.")
  _BATCH = flags.DEFINE_integer("batch", 32, "Global batch size.")
  _STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per mode.")
  _FAKE = flags.DEFINE_bool("fake_cpu_devices", True, "Fake CPU devices (off on a GPU machine).")
  _OUT = flags.DEFINE_string("out", "", "JSON file for the figures (optional).")
  _WORKER = flags.DEFINE_integer("worker", 0, "Internal: measure with this many devices.")
  app.run(main)
