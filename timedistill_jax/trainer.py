"""``train_and_evaluate``: epochs, learning-rate schedule, early stopping, logs, checkpoints.

One loop serves every run kind (a teacher, the student alone, the distilled student): the kind
only decides how the state is built and which jitted step runs (``runs.RUN_KINDS``). The loop

* validates the config and loads the data before anything is compiled or written;
* trains with a seeded per-epoch shuffle, showing a progress bar with the live loss;
* evaluates validation MSE over every window each epoch, keeps ``best`` and ``latest``
  checkpoints apart, and stops early with the reference's patience rule (strict improvement);
* restores the best state, evaluates it on every test window and writes ``results.json``;
* resumes from the ``latest`` checkpoint of its workdir when restarted.
"""

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from timedistill_jax import checkpoints, crash, parallel, runs, steps
from timedistill_jax.checkpoints import write_json
from timedistill_jax.data import iterate_batches
from timedistill_jax.errors import ConfigError, NumericsError
from timedistill_jax.metrics import MetricAccumulator
from timedistill_jax.models import count_params
from timedistill_jax.timing import median_ms
from timedistill_jax.train_state import learning_rate
from timedistill_jax.validation import validate_config

def evaluate(eval_fn, variables, split, batch_size: int, max_batches: int = 0,
             par: parallel.DataParallel | None = None) -> dict:
  """Metrics over every window of ``split`` (the padded last batch is masked)."""
  par = par or parallel.DataParallel("none")
  acc = MetricAccumulator()
  for b, batch in enumerate(iterate_batches(split, par.round_up(batch_size))):
    if max_batches and b >= max_batches:
      break
    acc.add(eval_fn(variables, par.shard(par.local_rows(runs.host_batch(batch)))))
  return acc.result()


def check_metrics(metrics: dict, split: str, when: str) -> None:
  """A non-finite MSE or MAE over a split is an error, never a NaN in the results (MAPE and
  MSPE are inf wherever a target is 0, as the reference's)."""
  bad = [k for k in ("mse", "mae") if not np.isfinite(metrics[k])]
  if bad:
    raise NumericsError(
        f"the {split} {', '.join(bad)} is {metrics[bad[0]]} at {when}: the model's forecasts "
        f"overflowed on the {split} windows. Check the {split} rows of the data for extreme "
        "values, or lower optim.lr.")


def train_and_evaluate(config, workdir) -> dict:
  """Trains ``config`` in ``workdir`` and returns the test results (also in results.json).

  ``runs.build_run`` makes the state and step of ``config.kind``. Under
  ``config.parallel.mode`` pmap / shard_map the same step body runs on every device; only
  process 0 writes logs and results.
  """
  t_start = time.time()
  validate_config(config)
  workdir = Path(workdir)
  check_workdir(config, workdir)
  done = workdir / "results.json"
  if done.exists():
    print(f"{workdir} already holds a finished run; delete it or use another --workdir to rerun.")
    return json.loads(done.read_text())
  parallel.initialize(config.parallel)
  par = parallel.DataParallel(config.parallel.mode)
  par.check_batch_size(config.data.batch_size)
  splits = runs.load_splits(config)  # data errors surface here, before any compilation
  run = runs.build_run(config, splits, par)
  main = par.is_main_process
  if main:
    workdir.mkdir(parents=True, exist_ok=True)
  with workdir_lock(workdir, main):
    return _train(config, workdir, splits, run, par, t_start)


# Keys a resumed run may change: they cannot change its result.
RESUME_FREE_KEYS = ("train.progress", "train.log_every", "train.epochs", "train.steps_per_call",
                    "data.data_dir", "parallel.coordinator_address", "parallel.num_processes",
                    "parallel.process_id", "parallel.auto_initialize")


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out |= _flat(value, f"{prefix}{key}.")
    else:
      out[prefix + key] = value
  return out


def check_workdir(config, workdir: Path) -> None:
  """Refuses, before anything is loaded, compiled or written, a workdir that cannot be one or
  whose run was made with another config (a resume would mix the two)."""
  for folder in (workdir, *workdir.parents):
    if folder.exists():
      if not folder.is_dir():
        raise ConfigError(
            f"--workdir {workdir}: {folder} is a file, not a folder; pass another --workdir.")
      if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir {workdir}: {folder} is not writable by this user; pass "
                          "another --workdir.")
      break
  previous = workdir / "config.json"
  if not previous.is_file():
    return
  try:
    old = _flat(json.loads(previous.read_text()))
  except ValueError as e:
    raise ConfigError(f"{previous} is not valid JSON ({e}); the workdir is damaged: delete it "
                      "or pass another --workdir.") from None
  new = _flat(json.loads(json.dumps(config.to_dict(), default=float)))
  # A key the old config lacks was added by a newer version, whose default keeps the old
  # behaviour; one the new config lacks was removed or misplaced, and counts as changed.
  changed = [k for k in sorted(old) if k not in RESUME_FREE_KEYS
             and old[k] != new.get(k, "<unset>")]
  if changed:
    diff = "; ".join(f"{k}: {old[k]!r} -> {new.get(k, '<unset>')!r}" for k in changed)
    raise ConfigError(f"{workdir} holds a run made with another config ({diff}); pass another "
                      "--workdir, or delete this one to start again.")


@contextlib.contextmanager
def workdir_lock(workdir: Path, take: bool = True):
  """Refuses a second run on the same workdir; the OS drops the lock if the process dies."""
  if not take:
    yield
    return
  path = workdir / ".lock"
  with open(path, "w") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise ConfigError(
          f"{workdir} is in use by another run (it holds the lock {path}); wait for that run "
          "to finish, or use another --workdir.") from None
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


# The loss's own order, so the part named is the first to go bad (jit hands dicts back sorted).
LOSS_PARTS = ("sup", "pred_scale", "pred_period", "feat_scale", "feat_period")


class LossGuard:
  """Stops on the first non-finite or diverged loss among the pending steps.

  Called every ``log_every`` steps and before each checkpoint, so a bad step is never saved.
  ``pending`` holds ``(epoch, step, metrics, window indices)``. A loss is diverged when it
  exceeds ``factor`` times the run's first loss (``config.train.divergence_factor``; 0: off);
  that first loss is kept in the checkpoints, so a resumed run judges by the same bound.
  """

  def __init__(self, workdir: Path, main: bool, factor: float, latest, reference=None):
    self.workdir, self.main, self.factor, self.latest = workdir, main, factor, latest
    self.reference = reference

  def check(self, pending: list) -> None:
    for epoch, step, metrics, indices in pending:
      values = {k: float(v) for k, v in metrics.items()}
      if self.reference is None and np.isfinite(values["loss"]):
        self.reference = abs(values["loss"])
      order = [k for k in LOSS_PARTS if k in values] + ["loss"]
      bad = [k for k in order if not np.isfinite(values[k])]
      if bad:
        self._stop(epoch, step, values, indices, bad[0], f"became {values[bad[0]]}")
      bound = self.factor * max(self.reference, 1e-12)
      if self.factor and values["loss"] > bound:
        self._stop(epoch, step, values, indices, "loss",
                   f"grew to {values['loss']:.4g}, past {self.factor:g} times the first "
                   f"step's {self.reference:.4g} (config.train.divergence_factor): the run "
                   "diverged")
    pending.clear()

  def _stop(self, epoch, step, values, indices, part, what):
    path = self.workdir / "nonfinite_batch.json"
    if self.main:
      write_json(path, {"epoch": epoch + 1, "step": step, "part": part, "metrics": values,
                        "window_indices": [int(i) for i in indices]})
    kept = (f"its last good checkpoint is kept in {self.workdir / 'checkpoints'}"
            if self.latest.latest_step() is not None else "no checkpoint had been saved yet")
    label = "the loss" if part == "loss" else f"the {part!r} loss"
    raise NumericsError(
        f"{label} {what} at step {step} (epoch {epoch + 1}); the run stopped and "
        f"{kept}. The training windows of that batch are listed in {path}. Lower optim.lr, or "
        "check the data of those windows.")


def _train(config, workdir: Path, splits, run: runs.Run, par, t_start: float) -> dict:
  main = par.is_main_process
  done = workdir / "results.json"
  if main:
    write_json(workdir / "config.json", config.to_dict())
  meta_base = {"config": config.to_dict(), "data": splits.metadata(),
               "model": config.model.name, "num_params": count_params(
                   {"params": run.state.params["model"]})} | run.metadata
  spe = runs.steps_per_epoch(config, splits)
  tcfg = config.train
  # Two latest steps, so a damaged newest one falls back to the one before.
  latest = checkpoints.CheckpointStore(workdir / "checkpoints" / "latest", max_to_keep=2)
  best_store = checkpoints.CheckpointStore(workdir / "checkpoints" / "best")
  abstract = jax.eval_shape(lambda: run.state.checkpoint_tree())
  state, start_epoch, start_batch, epoch_losses = run.state, 0, 0, []
  # The reference's patience rule, kept by hand: flax's EarlyStopping sets should_stop before
  # counting the current epoch, so it would stop one epoch later than the reference.
  best_val, bad_epochs, best_epoch = float("inf"), 0, -1
  guard = LossGuard(workdir, main, float(tcfg.get("divergence_factor", 0)), latest)
  if latest.latest_step() is not None:  # resume where the last checkpoint left off
    tree, meta = latest.restore_newest_good(abstract)
    state = state.from_checkpoint_tree(tree)
    best_val, bad_epochs, best_epoch = meta["best_val"], meta["bad_epochs"], meta["best_epoch"]
    guard.reference = meta.get("loss_reference")
    if meta["next_batch"] >= spe:
      start_epoch = meta["epoch"] + 1
    else:
      start_epoch, start_batch = meta["epoch"], meta["next_batch"]
      epoch_losses = meta["epoch_losses"]
    print(f"resuming {workdir} at epoch {start_epoch + 1}, batch {start_batch} "
          f"(best val MSE {best_val:.4f})")
  state = par.replicate(state)

  def save_latest(epoch, next_batch, losses):
    latest.save(epoch * spe + next_batch, par.unreplicate(state.checkpoint_tree()),
                meta_base | {"epoch": epoch, "next_batch": next_batch,
                             "epoch_losses": losses, "best_val": best_val,
                             "bad_epochs": bad_epochs, "best_epoch": best_epoch,
                             "loss_reference": guard.reference})

  epoch_ms = []
  log = open(workdir / "metrics.jsonl", "a") if main else None
  try:
    for epoch in range(start_epoch, tcfg.epochs):
      if bad_epochs >= tcfg.patience:
        break
      lr = learning_rate(config.optim, spe, tcfg.epochs, epoch * spe)
      first = start_batch if epoch == start_epoch else 0
      bar = tqdm(total=spe, initial=first, desc=f"epoch {epoch + 1}/{tcfg.epochs}", leave=False,
                 disable=not (tcfg.progress and main), dynamic_ncols=True)
      t0 = time.perf_counter()
      losses = list(epoch_losses) if epoch == start_epoch else []
      pending = []
      batches = iterate_batches(splits.train, config.data.batch_size, shuffle=True,
                                seed=config.seed, epoch=epoch, start_batch=first)
      for b, batch in enumerate(batches, start=first):
        if b >= spe:
          break
        state, m = run.step_fn(state, par.local_rows(batch))
        pending.append((epoch, epoch * spe + b + 1, m, batch["index"][batch["mask"] > 0]))
        if (b + 1) % tcfg.log_every == 0 or b + 1 == spe:
          guard.check(pending)
          bar.set_postfix(loss=f"{float(m['loss']):.4f}")
        crash.after_step(epoch * spe + b + 1)
        losses.append(m)
        if tcfg.checkpoint_every and (b + 1) % tcfg.checkpoint_every == 0 and b + 1 < spe:
          guard.check(pending)
          losses = [{k: float(v) for k, v in x.items()} for x in losses]
          save_latest(epoch, b + 1, losses)
        bar.update()
      guard.check(pending)
      jax.block_until_ready(state)
      epoch_ms.append(1000 * (time.perf_counter() - t0) / max(1, spe - first))
      bar.close()
      train_metrics = {k: float(np.mean([float(x[k]) for x in losses])) for k in losses[0]}
      val = evaluate(run.eval_fn, runs.eval_variables(state), splits.val,
                     config.data.eval_batch_size, tcfg.max_eval_batches, par)
      check_metrics(val, "validation", f"epoch {epoch + 1}")
      improved = val["mse"] < best_val
      if improved:
        best_val, bad_epochs, best_epoch = val["mse"], 0, epoch
        host_tree = par.unreplicate(state.checkpoint_tree())
        best_store.save(epoch, {"params": host_tree["params"],
                                "batch_stats": host_tree["batch_stats"]},
                        meta_base | {"epoch": epoch, "val": val})
      else:
        bad_epochs += 1
      save_latest(epoch, spe, [])
      if main:
        record = {"epoch": epoch + 1, "lr": lr, "train": train_metrics, "val": val,
                  "ms_per_step": epoch_ms[-1], "best_epoch": best_epoch + 1}
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(f"epoch {epoch + 1}: train loss {train_metrics['loss']:.4f}  val MSE "
              f"{val['mse']:.4f}{'  (best)' if improved else ''}  lr {lr:.2e}  "
              f"{epoch_ms[-1]:.1f} ms/step")
  finally:
    if log:
      log.close()
    latest.close()

  best_tree, best_meta = best_store.restore(
      {"params": abstract["params"], "batch_stats": abstract["batch_stats"]})
  variables = steps.model_variables(best_tree["params"]["model"], best_tree["batch_stats"])
  test = evaluate(run.eval_fn, par.replicate(variables), splits.test,
                  config.data.eval_batch_size, tcfg.max_eval_batches, par)
  check_metrics(test, "test", f"the best epoch {best_meta['epoch'] + 1}")
  sample = runs.sample_batch(splits, min(32, len(splits.train)))
  predict = jax.jit(lambda v, b: steps.predict_step(v, b, model=run.model))
  results = {
      "kind": config.get("kind", "student"), "dataset": config.data.name,
      "model": config.model.name, "pred_len": config.data.pred_len, "seed": config.seed,
      "test": test, "best_val": best_meta["val"], "best_epoch": best_meta["epoch"] + 1,
      "epochs": len(epoch_ms) + start_epoch, "num_params": meta_base["num_params"],
      "ms_per_train_step": float(np.median(epoch_ms[1:] or epoch_ms)) if epoch_ms else None,
      "inference_ms_per_batch": median_ms(predict, variables, sample),
      "wall_seconds": time.time() - t_start,
      "smoke": bool(config.get("smoke", False)),
      "parallel": {"mode": par.mode, "devices": par.num_devices,
                   "processes": jax.process_count()},
  } | {k: v for k, v in run.metadata.items() if k in ("teachers", "num_regressor_params")}
  if main:
    best_store.update_metadata(None, {"test": test})  # the checkpoint alone describes the model
    write_json(done, results)
    print(f"test: MSE {test['mse']:.4f}  MAE {test['mae']:.4f}  ({test['windows']} windows)")
  best_store.close()
  return results
