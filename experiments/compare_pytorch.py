r"""JAX against PyTorch on the same batch: numeric parity, then step times side by side.

From the repository root:

  pip install -e .[torch]
  TIMEDISTILL_DATA_DIR=/path/to/data python -m experiments.compare_pytorch \
      --out results/compare_pytorch.md

1. Parity. The DMLP student, the regressor, the iTransformer teacher (ETTh1 settings) and the
   TimeDistill loss are built in PyTorch (``experiments/pytorch_models.py``, written from the
   equations); the JAX variables are copied into them with ``convert.to_torch``. On one ETTh1
   training batch (L=720, H=96, batch 32, alpha = beta = 1) it reports the largest absolute
   difference of the predictions, the features, each loss part (those of the project's jitted
   ``distill_step``) and the gradients of every student and regressor parameter.
2. Speed. In one process and on the same batch: the project's jitted ``train_step`` and
   ``distill_step`` (teacher run on every batch, and with cached teacher outputs) against the
   PyTorch equivalents (forward, backward, Adam; the teacher in eval mode under ``no_grad``, as
   the reference runs it), for the plain MLP and the DMLP. The measurements alternate in rounds
   so that background load hits both sides alike; medians after warm-up.

Both go to the Markdown file ``--out``. Without torch it prints one line saying so.
"""

import argparse
import functools
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

try:
  import torch
except ImportError:
  torch = None



def _single_threaded_xla() -> None:
  """``--threads 1`` holds for XLA too; its flags must be set before jax is imported."""
  if "--threads" in sys.argv and sys.argv[sys.argv.index("--threads") + 1:][:1] == ["1"]:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen"
                               "=false intra_op_parallelism_threads=1").strip()


if __name__ == "__main__":
  _single_threaded_xla()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

from timedistill_jax import convert, losses, steps  # noqa: E402
from timedistill_jax.configs import common  # noqa: E402
from timedistill_jax.models import build_model  # noqa: E402
from timedistill_jax.models.regressor import Regressor  # noqa: E402
from timedistill_jax.train_state import (create_distill_state, create_train_state,  # noqa: E402
                                         make_optimizer)

TORCH_MISSING = ("compare_pytorch.py needs torch: install the torch extra: "
                 "pip install -e .[torch]")
TEACHER = dict(common.TEACHER_DEFAULTS["itransformer"],
               **common.TEACHER_MODEL["itransformer"]["etth1"])
PARTS = ("sup", "pred_scale", "pred_period", "feat_scale", "feat_period", "loss")


def real_batch(batch_size: int, seq_len: int, pred_len: int, label_len: int = 48):
  """``batch_size`` ETTh1 training windows (spread over the split), or synthetic ones."""
  from timedistill_jax.data import load_dataset
  from timedistill_jax.errors import DataError
  try:
    splits, source = load_dataset("etth1", seq_len=seq_len, label_len=label_len,
                                  pred_len=pred_len), "ETTh1"
  except DataError:
    splits, source = load_dataset("synthetic", seq_len=seq_len, label_len=label_len,
                                  pred_len=pred_len), "synthetic series (ETTh1 not found)"
  idx = np.linspace(0, len(splits.train) - 1, batch_size).astype(int)
  batch = splits.train.get_batch(idx)
  batch = {k: np.asarray(batch[k], np.float32) for k in ("x", "y", "x_mark", "y_mark")}
  return batch | {"mask": np.ones(batch_size, np.float32)}, source


class Pair:
  """One student and one iTransformer teacher, in JAX and in PyTorch with the same weights.

  ``batch``: numpy arrays ``x [B, L, C]``, ``y [B, S + H, C]``, ``x_mark``, ``y_mark``, ``mask``.
  """

  def __init__(self, batch, pred_len: int, *, student: str = "dmlp", d_model: int = 512,
               teacher=None, alpha: float = 1.0, beta: float = 1.0, seed: int = 0,
               lr: float = 0.01):
    from experiments import pytorch_models as tm

    _, seq_len, c = batch["x"].shape
    self.pred_len, self.tm = pred_len, tm
    teacher = dict(TEACHER if teacher is None else teacher)
    sizes = dict(seq_len=seq_len, label_len=batch["y"].shape[1] - pred_len, pred_len=pred_len,
                 enc_in=c)
    self.student = build_model(ml_collections.ConfigDict(dict(
        name=student, d_model=d_model, norm="non-stationary", moving_avg=25)), **sizes)
    self.teacher = build_model(ml_collections.ConfigDict(dict(name="itransformer", **teacher)),
                               **sizes)
    self.loss = steps.LossConfig(alpha=alpha, beta=beta)
    self.batch = {k: jnp.asarray(v) for k, v in batch.items()}
    key = jax.random.PRNGKey(seed)
    self.t_vars = jax.jit(lambda k: self.teacher.init(
        k, self.batch["x"][:1], self.batch["x_mark"][:1]))(jax.random.fold_in(key, 1))
    self.tx = make_optimizer(ml_collections.ConfigDict(dict(
        lr=lr, schedule="constant", weight_decay=0.0)), 1, 1)
    self.state = create_distill_state(self.student, [self.teacher], self.tx, key, self.batch)
    self.regressor = Regressor(features=self.student.feature_dim)
    self.lr = lr

    # PyTorch copies of the same weights.
    self.t_student = tm.Student(seq_len, pred_len, c, d_model, decomposition=student == "dmlp")
    _load(self.t_student, convert.to_torch(self.student, {
        "params": self.state.params["model"], "batch_stats": self.state.batch_stats}))
    self.t_teacher = tm.ITransformer(seq_len, pred_len, teacher["d_model"], teacher["n_heads"],
                                     teacher["e_layers"], teacher["d_ff"], teacher["dropout"])
    _load(self.t_teacher, convert.to_torch(self.teacher, self.t_vars))
    self.t_regressor = tm.Regressor(self.teacher.feature_dim, d_model)
    _load(self.t_regressor, regressor_to_torch(self.state.params["regressors"][0]))
    self.t_batch = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}


def _load(module, state_dict):
  missing, unexpected = module.load_state_dict(
      {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, strict=False)
  # Only the BatchNorm step counters, which nothing reads, keep their initial value.
  assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (
      missing, unexpected)


def regressor_to_torch(params) -> dict:
  """Our regressor's fc1 / fc2 are the reference's ``model.0`` / ``model.2``."""
  out = {}
  for i, fc in ((0, "fc1"), (2, "fc2")):
    out[f"model.{i}.weight"] = np.asarray(params["params"][fc]["kernel"]).T
    out[f"model.{i}.bias"] = np.asarray(params["params"][fc]["bias"])
  return out


# -- 1. parity ---------------------------------------------------------------------------------

def parity(pair: Pair) -> dict:
  """Largest absolute differences, JAX vs PyTorch, on ``pair``'s batch (name -> float)."""
  b, tb, loss = pair.batch, pair.t_batch, pair.loss
  state = pair.state
  rng = steps.step_rng(state, None)

  def loss_fn(params, b):  # the body of distill_step, with its intermediate values returned
    variables = steps.model_variables(params["model"], state.batch_stats)
    pred_s, feats_s, _ = steps.apply_model(pair.student, variables, b, train=True, rng=rng)
    (pred_t, hidden_t), = steps.teacher_outputs([pair.teacher], [pair.t_vars], b)
    total, parts = losses.timedistill_loss(
        pred_s, pred_t, feats_s["hidden"], pair.regressor.apply(params["regressors"][0], hidden_t),
        steps.target_of(b, pair.pred_len, 0), alpha=loss.alpha, beta=loss.beta, mask=b["mask"])
    return total, (pred_s, feats_s["hidden"], pred_t, hidden_t)

  # The batch is an argument, not a closed-over constant that XLA would fold at compile time.
  grads, (pred_s, hid_s, pred_t, hid_t) = jax.jit(jax.grad(loss_fn, has_aux=True))(
      state.params, b)
  # The loss parts as the project's jitted distill_step reports them.
  step = steps.jit_distill_step(pair.student, [pair.teacher], loss=loss, pred_len=pair.pred_len)
  _, metrics = step(jax.tree_util.tree_map(jnp.copy, state), [pair.t_vars], b)

  pair.t_student.train()
  pair.t_teacher.eval()
  for m in (pair.t_student, pair.t_regressor):
    m.zero_grad(set_to_none=True)
  with torch.no_grad():
    t_pred_t, t_hid_t = pair.t_teacher(tb["x"], tb["x_mark"])
  t_pred_s, t_hid_s = pair.t_student(tb["x"])
  total, parts = pair.tm.timedistill_loss(
      t_pred_s, t_pred_t, t_hid_s, pair.t_regressor(t_hid_t), tb["y"][:, -pair.pred_len:],
      loss.alpha, loss.beta)
  total.backward()
  parts["loss"] = total

  diff = lambda a, t: float(np.max(np.abs(np.asarray(a) - t.detach().numpy())))
  out = {"student prediction": diff(pred_s, t_pred_s), "student feature": diff(hid_s, t_hid_s),
         "teacher prediction": diff(pred_t, t_pred_t), "teacher feature": diff(hid_t, t_hid_t)}
  for k in PARTS:
    out[f"loss part {k}"] = abs(float(metrics[k]) - float(parts[k].detach()))
  out["gradient, student"] = _grad_diff(
      convert.to_torch(pair.student, {"params": grads["model"]}), pair.t_student)
  out["gradient, regressor"] = _grad_diff(regressor_to_torch(grads["regressors"][0]),
                                          pair.t_regressor)
  out["largest gradient entry"] = max(float(jnp.max(jnp.abs(g)))
                                      for g in jax.tree_util.tree_leaves(grads))
  out["loss value"] = float(metrics["loss"])
  return out


def _grad_diff(jax_grads: dict, module) -> float:
  worst = 0.0
  for name, p in module.named_parameters():
    g = np.zeros(tuple(p.shape), np.float32) if p.grad is None else p.grad.numpy()
    worst = max(worst, float(np.max(np.abs(jax_grads[name] - g))))
  return worst


# -- 2. speed -----------------------------------------------------------------------------------

def step_runners(pair: Pair) -> dict:
  """name -> a function running one step to completion (state kept inside)."""
  b = pair.batch
  box = {}
  copy = lambda tree: jax.tree_util.tree_map(jnp.copy, tree)  # each step donates its own state
  # JAX train_step: the student alone, MSE.
  box["train"] = create_train_state({"model": copy(pair.state.params["model"])},
                                    copy(pair.state.batch_stats), pair.tx, jax.random.PRNGKey(0))
  train = steps.jit_train_step(pair.student, pred_len=pair.pred_len, f_dim=0)
  box["online"] = copy(pair.state)
  online = steps.jit_distill_step(pair.student, [pair.teacher], loss=pair.loss,
                                  pred_len=pair.pred_len)
  box["cached"] = copy(pair.state)
  cached = jax.jit(functools.partial(
      steps.cached_distill_step, student=pair.student, regressor=pair.regressor,
      loss=pair.loss, pred_len=pair.pred_len), donate_argnums=0)
  (pred_t, hid_t), = jax.jit(lambda v, x: steps.teacher_outputs([pair.teacher], [v], x))(
      pair.t_vars, b)
  cached_batch = b | {"teacher_pred": (pred_t,), "teacher_hidden": (hid_t,)}

  def jax_step(key, fn, *args):
    def run():
      box[key], metrics = fn(box[key], *args)
      jax.block_until_ready(metrics["loss"])
    return run

  torch_steps = torch_step_runners(pair)
  return {"jax train_step": jax_step("train", train, b),
          "torch train_step": torch_steps["train"],
          "jax distill_step (teacher online)": jax_step("online", online, [pair.t_vars], b),
          "jax distill_step (cached teacher)": jax_step("cached", cached, cached_batch),
          "torch distill_step (teacher online)": torch_steps["online"]}


def torch_step_runners(pair: Pair, teacher_outputs=None) -> dict:
  """The reference's steps on ``pair``'s PyTorch models, each run to completion: ``train`` (the
  student alone, MSE, Adam), ``online`` (distillation, the teacher in eval mode under
  ``no_grad`` on every batch) and, given the teacher's ``(pred, hidden)`` as arrays,
  ``cached`` (distillation from those outputs)."""
  tb, tm = pair.t_batch, pair.tm
  y = tb["y"][:, -pair.pred_len:]
  opt_train = torch.optim.Adam(pair.t_student.parameters(), lr=pair.lr)
  opt_kd = torch.optim.Adam([*pair.t_student.parameters(), *pair.t_regressor.parameters()],
                            lr=pair.lr)

  def train():
    pair.t_student.train()
    opt_train.zero_grad(set_to_none=True)
    pred, _ = pair.t_student(tb["x"])
    torch.nn.functional.mse_loss(pred, y).backward()
    opt_train.step()
    _sync()

  def distill(outputs=None):
    pair.t_student.train()
    pair.t_teacher.eval()
    opt_kd.zero_grad(set_to_none=True)
    if outputs is None:
      with torch.no_grad():
        outputs = pair.t_teacher(tb["x"], tb["x_mark"])
    pred_t, hid_t = outputs
    pred_s, hid_s = pair.t_student(tb["x"])
    total, _ = tm.timedistill_loss(pred_s, pred_t, hid_s, pair.t_regressor(hid_t), y,
                                   pair.loss.alpha, pair.loss.beta)
    total.backward()
    opt_kd.step()
    _sync()

  runners = {"train": train, "online": distill}
  if teacher_outputs is not None:
    cached = tuple(torch.from_numpy(np.asarray(a)) for a in teacher_outputs)
    runners["cached"] = functools.partial(distill, cached)
  return runners


def _sync():
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def interleaved_medians(runners: dict, rounds: int, steps_per_round: int,
                        warmup: int = 5, pause_s: float = 0.0) -> dict:
  """Median ms per call; every runner takes ``steps_per_round`` calls in turn, ``rounds`` times,
  so that a burst of background load falls on all of them alike (hence not
  ``timing.median_ms``, which times one function at a time). ``pause_s``: an untimed pause
  before each runner's calls, for the worker threads of the one before (OpenMP's, XLA's,
  ONNX Runtime's) to stop spinning."""
  for fn in runners.values():
    for _ in range(warmup):
      fn()
  times = {k: [] for k in runners}
  for _ in range(rounds):
    for name, fn in runners.items():
      time.sleep(pause_s)
      for _ in range(steps_per_round):
        t = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - t)
  return {k: 1000 * float(np.median(v)) for k, v in times.items()}


# -- report -------------------------------------------------------------------------------------

def setting_line(source: str, batch) -> str:
  dev = jax.devices()[0]
  b, seq_len, c = batch["x"].shape
  return (f"{source}, L={seq_len}, C={c}, batch {b}; jax {jax.__version__} on {dev.platform} "
          f"({dev.device_kind}), torch {torch.__version__} with {torch.get_num_threads()} "
          f"thread(s){' on ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ''}"
          f"; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})")


def report(setting: str, parity_rows: dict, timing: dict, loads: tuple, threads: int,
           timing_only: bool = False) -> str:
  if timing_only:
    return "\n".join(timing_section(setting, timing, loads, threads)) + "\n"
  lines = ["# JAX vs PyTorch: parity and step times", "",
           "`python -m experiments.compare_pytorch`. " + setting + ".", "",
           "## Parity (float32, one batch, alpha = beta = 1, ETTh1 iTransformer settings)", "",
           "Largest absolute difference, JAX vs PyTorch with the same weights:", "",
           "| quantity | " + " | ".join(parity_rows) + " |",
           "| --- |" + " --- |" * len(parity_rows)]
  first = next(iter(parity_rows.values()))
  for key in first:
    lines.append(f"| {key} | " + " | ".join(f"{rows[key]:.2e}" if "value" not in key and
                                               "largest" not in key else f"{rows[key]:.4g}"
                                               for rows in parity_rows.values()) + " |")
  return "\n".join(lines + [""] + timing_section(setting, timing, loads, threads)) + "\n"


def timing_section(setting: str, timing: dict, loads: tuple, threads: int) -> list:
  xla = "XLA with one thread" if threads == 1 else f"XLA on all {os.cpu_count()} cores"
  lines = [f"## Median ms per step, {threads} thread{'s' if threads > 1 else ''}", "",
           f"{setting}; torch.set_num_threads({threads}), {xla}. Load average (1 min) before / "
           f"after the timing: {loads[0]:.2f} / {loads[1]:.2f}. JAX and PyTorch alternate in "
           "rounds on the same batch.", "",
           "| student | JAX train_step | PyTorch train_step | ratio | JAX distill_step, teacher "
           "online | JAX distill_step, cached teacher | PyTorch distill_step | ratio online | "
           "ratio cached |", "| --- |" + " --- |" * 8]
  for student, t in timing.items():
    tt, jt = t["torch train_step"], t["jax train_step"]
    td, jo, jc = (t["torch distill_step (teacher online)"],
                  t["jax distill_step (teacher online)"], t["jax distill_step (cached teacher)"])
    lines.append(f"| {student} | {jt:.2f} | {tt:.2f} | {tt / jt:.2f}x | {jo:.2f} | {jc:.2f} | "
                 f"{td:.2f} | {td / jo:.2f}x | {td / jc:.2f}x |")
  lines += ["", "Ratio = PyTorch ms / JAX ms (above 1: JAX is faster). The PyTorch "
            "distillation step runs its teacher on every batch, as the reference does."]
  if max(loads) > os.cpu_count():
    lines += ["", "The load average exceeded the number of cores: other jobs shared the CPU. "
              "Multi-threaded PyTorch (OpenMP) loses most when its threads are descheduled, so "
              "under such load the 1-thread table (`--threads 1`) is the like-for-like "
              "comparison of the arithmetic."]
  return lines + [""]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="results/compare_pytorch.md")
  parser.add_argument("--pred_len", type=int, default=96)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=20, help="steps per runner and round")
  parser.add_argument("--append", action="store_true",
                      help="add only the timing section to an existing --out file")
  args = parser.parse_args(argv)
  if torch is None:
    print(TORCH_MISSING)
    return 1
  torch.set_num_threads(args.threads)
  batch, source = real_batch(args.batch, 720, args.pred_len)
  pairs = {s: Pair(batch, args.pred_len, student=s) for s in ("mlp", "dmlp")}
  parity_rows = {} if args.append else {s: parity(p) for s, p in pairs.items()}
  for s, rows in parity_rows.items():
    print(s, {k: f"{v:.2e}" for k, v in rows.items()})
  loads, timing = [os.getloadavg()[0]], {}
  for s, p in pairs.items():
    timing[s] = interleaved_medians(step_runners(p), args.rounds, args.steps)
    print(s, {k: f"{v:.2f} ms" for k, v in timing[s].items()})
  loads.append(os.getloadavg()[0])
  text = report(setting_line(source, batch), parity_rows, timing, tuple(loads), args.threads,
                timing_only=args.append)
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text((out.read_text() + "\n" if args.append and out.exists() else "") + text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
