r"""Speed of the training core, measured side by side in one process; writes one Markdown table.

From the repository root (the torch extra for the PyTorch columns; ETTh1 in the data folder):

  TIMEDISTILL_DATA_DIR=/path/to/data python -m experiments.benchmark_runs \
      --out results/benchmark_runs_cpu.md

1. Steps per second at ETTh1's shape (L=720, H=96, batch 32, alpha = beta = 1), for the plain
   MLP and the DMLP: ``train_step``, ``distill_step`` with the teacher run on every batch and
   with its outputs cached, each run one step per call on a host batch (the notebook way), and
   ``--steps_per_call`` steps per call on windows gathered on the device (the way training runs
   them); against the PyTorch equivalents of ``experiments/compare_pytorch.py`` (the same
   weights, forward, backward and Adam; the teacher in eval mode under ``no_grad``, or its
   outputs given). All of them alternate in rounds, so background load falls on all alike.
2. The share of the CPU's sgemm peak each step reaches: XLA's FLOP count of the compiled step
   over its time, against numpy's float32 matrix product (``--sgemm_peak`` measures it in a
   subprocess with ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` unset, and names OpenBLAS's
   kernel through threadpoolctl when it is installed).
3. Whole distillation runs to early stop (ETTh1 H=96, iTransformer teacher trained beforehand
   and reused), MLP and DMLP, each as a fresh ``python -m timedistill_jax`` process: wall clock
   from process start, and the run's own split of it (``results.json`` ``seconds``: compile,
   steps, evaluation, checkpoints, teacher cache, data, the rest). Each is run with an empty
   compilation cache and again with the cache the first run filled. The kinds alternate.
4. Ensembles: seeds 2021-2025 of the MLP and the DMLP distillation as one ensemble against five
   single runs one after another, wall clock from process start, and how far apart the members'
   and the single runs' test MSE are.
"""

import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

ROOT = Path(__file__).resolve().parent.parent
SGEMM = r"""
import json, time, numpy as np
n, info = 2048, {}
try:
  import threadpoolctl
  blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
  info = {k: blas[0].get(k) for k in ("internal_api", "architecture", "num_threads")} if blas else {}
except ImportError:
  pass
a, b = (np.random.default_rng(i).standard_normal((n, n)).astype(np.float32) for i in (0, 1))
a @ b
best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(7))
print(json.dumps({"gflops": 2 * n ** 3 / best / 1e9, "blas": info}))
"""


def sgemm_peak() -> dict:
  """numpy's float32 2048^3 product, best of 7, with OpenBLAS's core-type overrides unset."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
  out = subprocess.run([sys.executable, "-c", SGEMM], env=env, capture_output=True, text=True,
                       check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


# -- 1. steps per second ------------------------------------------------------------------------

def step_runners(pair, splits, k: int) -> tuple[dict, dict]:
  """``name -> (function running its unit, steps in the unit)`` and ``name -> FLOPs a step``."""
  import jax
  import jax.numpy as jnp

  from experiments.compare_pytorch import torch_step_runners
  from timedistill_jax import parallel, runs, steps
  from timedistill_jax.data.device import device_data, window_starts
  from timedistill_jax.train_state import create_train_state

  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # each runner donates its own state
  train_state = lambda: create_train_state({"model": copy(pair.state.params["model"])},
                                           copy(pair.state.batch_stats), pair.tx,
                                           jax.random.PRNGKey(0))
  kw = dict(student=pair.student, regressor=pair.regressor, loss=pair.loss,
            pred_len=pair.pred_len)
  bodies = {
      "train_step": (functools.partial(steps.train_step, model=pair.student,
                                       pred_len=pair.pred_len), train_state, ()),
      "distill_step, teacher online": (functools.partial(
          steps.distill_step, teachers=(pair.teacher,), **kw), lambda: copy(pair.state),
          ([pair.t_vars],)),
      "distill_step, cached teacher": (functools.partial(steps.cached_distill_step, **kw),
                                       lambda: copy(pair.state), ()),
  }
  b = pair.batch
  (pred_t, hid_t), = jax.jit(lambda v, x: steps.teacher_outputs([pair.teacher], [v], x))(
      pair.t_vars, b)
  host_batch = {"train_step": b, "distill_step, teacher online": b,
                "distill_step, cached teacher": b | {"teacher_pred": (pred_t,),
                                                     "teacher_hidden": (hid_t,)}}
  preds, hiddens = runs.precompute_teacher_outputs([pair.teacher], [pair.t_vars], splits.train,
                                                   256)
  data = device_data(splits)
  start, mask = window_starts(splits.train, 0, b["x"].shape[0], shuffle=True, seed=0, epoch=0)
  start, mask = start[:k], mask[:k]
  par = parallel.DataParallel("none")
  runners, flops = {}, {}
  for name, (body, fresh, extra) in bodies.items():
    box = {"one": fresh(), "many": fresh()}
    one = jax.jit(body, donate_argnums=0)
    batch = host_batch[name]
    flops[name] = one.lower(box["one"], *extra, batch).compile().cost_analysis()["flops"]

    def run_one(one=one, box=box, extra=extra, batch=batch):
      box["one"], m = one(box["one"], *extra, batch)
      jax.block_until_ready(m["loss"])

    loop_data = data.with_teacher_outputs(preds, hiddens) if "cached" in name else data
    loop = runs.loop_fn(par, body, loop_data, *extra)

    def run_many(loop=loop, box=box):
      box["many"], m = loop(box["many"], start, mask, k)
      jax.block_until_ready(m["loss"])

    runners[f"JAX {name}, 1 step a call"] = (run_one, 1)
    runners[f"JAX {name}, {k} steps a call"] = (run_many, k)

  torch_steps = torch_step_runners(pair, (pred_t, hid_t))
  runners["PyTorch train_step"] = (torch_steps["train"], 1)
  runners["PyTorch distill_step, teacher online"] = (torch_steps["online"], 1)
  runners["PyTorch distill_step, cached teacher"] = (torch_steps["cached"], 1)
  return runners, flops


def interleaved_ms_per_step(runners: dict, rounds: int, seconds: float) -> dict:
  """Median ms per step of each runner; in every round each runs for about ``seconds`` in turn,
  so that a burst of background load falls on all of them alike."""
  for fn, _ in runners.values():  # warm-up: compilation, caches
    fn()
    fn()
  times = {name: [] for name in runners}
  for _ in range(rounds):
    for name, (fn, n) in runners.items():
      t_end = time.perf_counter() + seconds
      while True:
        t = time.perf_counter()
        fn()
        times[name].append((time.perf_counter() - t) / n)
        if t >= t_end:
          break
  return {name: 1000 * float(np.median(v)) for name, v in times.items()}


# -- 3. whole runs ------------------------------------------------------------------------------

def teacher_dir(root: Path, smoke: bool = False) -> Path:
  """The ETTh1 H=96 iTransformer teacher, trained once and reused (a toy one with ``smoke``)."""
  workdir = root / "teacher_itransformer_etth1_96"
  if not (workdir / "results.json").exists():
    print(f"training the teacher in {workdir} ...")
    subprocess.run([sys.executable, "-m", "timedistill_jax", "--config",
                    "teacher:dataset=etth1,model=itransformer,pred_len=96"
                    + (",smoke=True" if smoke else ""), "--workdir",
                    str(workdir), "--config.train.progress=False"], cwd=ROOT, check=True)
  return workdir


def whole_run(student: str, teacher: Path, workdir: Path, cache: Path) -> dict:
  """One distillation run as a fresh process: wall clock from its start, and its own split."""
  shutil.rmtree(workdir, ignore_errors=True)
  t = time.perf_counter()
  subprocess.run([sys.executable, "-m", "timedistill_jax", "--config",
                  f"distill:dataset=etth1,teacher=itransformer,student={student},pred_len=96",
                  f"--config.teacher.workdir={teacher}", "--config.distill.alpha=1",
                  "--config.distill.beta=1", "--config.train.progress=False",
                  f"--compilation_cache={cache}", "--workdir", str(workdir)],
                 cwd=ROOT, check=True, capture_output=True, text=True)
  wall = time.perf_counter() - t
  results = json.loads((workdir / "results.json").read_text())
  seconds = dict(results["seconds"])
  seconds["interpreter, imports and the rest"] = wall - seconds.pop("total") + seconds.pop(
      "other")
  return {"wall": wall, "seconds": seconds, "epochs": results["epochs"],
          "test_mse": results["test"]["mse"],
          "best_epoch": results["best_epoch"]}


def ensemble_runs(student: str, teacher: Path, root: Path, seeds: list, cache: Path) -> dict:
  """``seeds`` as one ensemble against as many single runs one after another (the same
  settings, the same compilation cache), each a fresh process; wall clocks from process start,
  and how far each member's test MSE is from its single run's."""
  flags = [f"--config.teacher.workdir={teacher}", "--config.distill.alpha=1",
           "--config.distill.beta=1", "--config.train.progress=False",
           f"--compilation_cache={cache}"]
  config = f"distill:dataset=etth1,teacher=itransformer,student={student},pred_len=96"
  singles, wall = [], 0.0
  for seed in seeds:
    workdir = root / f"single_{student}_{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "timedistill_jax", "--config", f"{config},seed={seed}",
                    *flags, "--workdir", str(workdir)], cwd=ROOT, check=True,
                   capture_output=True)
    wall += time.perf_counter() - t
    singles.append(json.loads((workdir / "results.json").read_text()))
  workdir = root / f"ensemble_{student}"
  shutil.rmtree(workdir, ignore_errors=True)
  t = time.perf_counter()
  subprocess.run([sys.executable, "-m", "timedistill_jax", "--config", config, *flags,
                  f"--config.ensemble.seeds={','.join(map(str, seeds))}", "--workdir",
                  str(workdir)], cwd=ROOT, check=True, capture_output=True)
  ensemble_wall = time.perf_counter() - t
  members = json.loads((workdir / "results.json").read_text())["members"]
  gap = max(abs(m["test"]["mse"] - r["test"]["mse"]) / r["test"]["mse"]
            for m, r in zip(members, singles))
  return {"singles_wall": wall, "ensemble_wall": ensemble_wall,
          "epochs": [r["epochs"] for r in singles], "member_epochs": [m["epochs"] for m in members],
          "same_best_epoch": all(m["best_epoch"] == r["best_epoch"]
                                 for m, r in zip(members, singles)),
          "max_relative_test_gap": gap}


# -- report -------------------------------------------------------------------------------------

def machine_line(peak: dict, loads: list) -> str:
  import jax

  from experiments.compare_pytorch import torch

  blas = peak["blas"]
  kernel = (f"{blas.get('internal_api')} {blas.get('architecture')} kernel, "
            f"{blas.get('num_threads')} threads" if blas else "kernel unknown (no threadpoolctl)")
  return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; jax "
          f"{jax.__version__} ({jax.devices()[0].platform}), "
          + (f"torch {torch.__version__} with {torch.get_num_threads()} threads"
             if torch is not None else "no torch")
          + f"; numpy sgemm peak {peak['gflops']:.0f} GFLOP/s "
          f"({kernel}); load average (1 min) before / after: "
          + " / ".join(f"{v:.2f}" for v in loads))


def step_table(timing: dict, flops: dict, peak: float, k: int) -> list:
  lines = ["| student | step | JAX, 1 step a call | JAX, " + f"{k} steps a call | PyTorch | "
           "PyTorch / JAX (1 a call) | PyTorch / JAX (" + f"{k} a call) | GFLOP a step | "
           "share of sgemm peak |", "| --- |" * 1 + " --- |" * 8]
  for student, t in timing.items():
    for step in ("train_step", "distill_step, teacher online", "distill_step, cached teacher"):
      one, many = t[f"JAX {step}, 1 step a call"], t[f"JAX {step}, {k} steps a call"]
      torch_ms = t[f"PyTorch {step}"]
      gflop = flops[student][step] / 1e9
      lines.append(f"| {student} | {step} | {one:.2f} ms | {many:.2f} ms | {torch_ms:.2f} ms | "
                   f"{torch_ms / one:.2f}x | {torch_ms / many:.2f}x | {gflop:.2f} | "
                   f"{gflop / (many / 1000) / peak:.0%} |")
  return lines


def run_table(whole: dict) -> list:
  phases = sorted({p for r in whole.values() for p in r["seconds"]})
  lines = ["| run | wall s | " + " | ".join(phases) + " | share in steps | epochs | test MSE |",
           "| --- |" + " --- |" * (len(phases) + 4)]
  for name, r in whole.items():
    s = r["seconds"]
    lines.append(f"| {name} | {r['wall']:.1f} | " + " | ".join(
        f"{s.get(p, 0.0):.2f}" for p in phases) + f" | {s.get('steps', 0) / r['wall']:.0%} | "
        f"{r['epochs']} | {r['test_mse']:.4f} |")
  return lines


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from experiments.compare_pytorch import Pair, real_batch, torch
  from timedistill_jax.data import load_dataset

  steps_too = _STEPS.value and torch is not None
  if _STEPS.value and torch is None:
    print("NOTE: torch is not installed (pip install -e .[torch]): the step table, whose "
          "columns compare with PyTorch, is left out.")
  if torch is not None:
    torch.set_num_threads(_THREADS.value)
  loads = [os.getloadavg()[0]]
  peak = sgemm_peak()
  print(f"numpy sgemm peak: {peak['gflops']:.0f} GFLOP/s {peak['blas']}")
  batch, source = real_batch(32, 720, 96)
  splits = load_dataset("etth1" if source == "ETTh1" else "synthetic", seq_len=720,
                        label_len=48, pred_len=96)
  k = _STEPS_PER_CALL.value
  timing, flops = {}, {}
  for student in ("mlp", "dmlp") if steps_too else ():
    runners, flops[student] = step_runners(Pair(batch, 96, student=student), splits, k)
    timing[student] = interleaved_ms_per_step(runners, _ROUNDS.value, _SECONDS.value)
    print(student, {n: f"{v:.2f} ms" for n, v in timing[student].items()})
  whole = {}
  if _RUNS.value:
    root = Path(_WORKDIR.value)
    teacher = teacher_dir(root)
    caches = {s: root / f"xla_cache_{s}" for s in ("mlp", "dmlp")}
    for cache in caches.values():
      shutil.rmtree(cache, ignore_errors=True)
    for label in ("empty compilation cache", "filled compilation cache"):
      for student in ("mlp", "dmlp"):
        name = f"{student.upper()} distillation, {label}"
        whole[name] = whole_run(student, teacher, root / f"kd_{student}", caches[student])
        print(name, json.dumps(whole[name]))
  ensembles = {}
  if _ENSEMBLES.value:
    root = Path(_WORKDIR.value)
    teacher = teacher_dir(root)
    seeds = [2021, 2022, 2023, 2024, 2025]
    for student in ("mlp", "dmlp"):
      ensembles[student] = ensemble_runs(student, teacher, root, seeds,
                                         root / f"xla_cache_{student}")
      print(student, json.dumps(ensembles[student]))
  loads.append(os.getloadavg()[0])
  lines = ["# The training core's speed on this machine", "",
           f"`python -m experiments.benchmark_runs`. {machine_line(peak, loads)}.", "",
           f"## Steps: median ms a step ({source}, L=720, H=96, batch 32, alpha = beta = 1)", "",
           *step_table(timing, flops, peak["gflops"], k), "",
           "PyTorch / JAX above 1: JAX is faster. The share of the sgemm peak is XLA's FLOP count "
           "of the step over its time at " + f"{k} steps a call, against numpy's float32 matrix "
           "product on the same cores."] if timing else [
               "# The training core's speed on this machine", "",
               f"`python -m experiments.benchmark_runs`. {machine_line(peak, loads)}."]
  if whole:
    lines += ["", "## Whole distillation runs to early stop (ETTh1, H=96, iTransformer teacher)",
              "", "Seconds, wall clock from process start; the phases are the run's own "
              "(`results.json`), the rest is the interpreter, imports and set-up.", "",
              *run_table(whole)]
  if ensembles:
    lines += ["", "## 5 seeds as one ensemble against 5 runs one after another", "",
              "ETTh1 H=96 distillation from the iTransformer teacher, alpha = beta = 1, seeds "
              "2021-2025, the same compilation cache; wall clocks from process start.", "",
              "| student | 5 single runs, s | one ensemble, s | throughput | epochs (single runs) "
              "| same best epochs | largest test MSE gap |", "| --- |" + " --- |" * 6]
    for student, e in ensembles.items():
      lines.append(f"| {student.upper()} | {e['singles_wall']:.1f} | {e['ensemble_wall']:.1f} | "
                   f"{e['singles_wall'] / e['ensemble_wall']:.2f}x | "
                   f"{', '.join(map(str, e['epochs']))} | {e['same_best_epoch']} | "
                   f"{e['max_relative_test_gap']:.1e} |")
    lines += ["", "The ensemble runs until its last member stops; a member that stopped earlier "
              "is no longer looked at, but its share of each step is still computed (vmap runs "
              "all members)."]
  text = "\n".join(lines) + "\n"
  print(text)
  if _OUT.value:
    out = Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"sgemm": peak, "loads": loads, "ms_per_step": timing, "flops": flops,
         "runs": whole, "ensembles": ensembles}, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
  # The command's flags, defined only when it runs: the experiment modules are imported
  # together (tests, tools) and several flag names recur among them.
  _OUT = flags.DEFINE_string("out", "results/benchmark_runs_cpu.md", "Markdown file to write.")
  _ROUNDS = flags.DEFINE_integer("rounds", 5, "Rounds of the interleaved step timing.")
  _SECONDS = flags.DEFINE_float("seconds", 1.0, "Seconds each runner runs in a round.")
  _STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 100, "Steps a call, many-step loop.")
  _THREADS = flags.DEFINE_integer("threads", 2, "torch.set_num_threads.")
  _RUNS = flags.DEFINE_bool("runs", True, "Also time whole distillation runs.")
  _ENSEMBLES = flags.DEFINE_bool("ensembles", True, "Also time 5 seeds as one ensemble against "
                                 "5 single runs (about 6 minutes on 2 cores).")
  _STEPS = flags.DEFINE_bool("steps", True, "Time the steps (section 1).")
  _WORKDIR = flags.DEFINE_string("workdir", "runs/benchmark_runs", "Folder of the runs.")
  app.run(main)
