"""``train_and_evaluate``: epochs, learning-rate schedule, early stopping, logs, checkpoints.

One loop serves every run kind (a teacher, the student alone, the distilled student): the kind
only decides how the state is built and which step runs (``runs.RUN_KINDS``). The loop

* validates the config and loads the data before anything is compiled or written;
* runs many steps per call (``config.train.steps_per_call``; by default up to the next
  checkpoint or the end of the epoch), each step gathering its windows from data placed on the
  device once, with a seeded per-epoch shuffle; the progress bar and the live loss update per
  call, and every step's loss is checked (``guards.LossGuard``);
* evaluates validation MSE over every window each epoch in one call, keeps ``best`` and
  ``latest`` checkpoints apart, and stops early with the reference's patience rule;
* restores the best state, evaluates it on every test window and writes ``results.json``, with
  the run's time split into phases (compile, steps, evaluation, checkpoints, ...);
* resumes from the ``latest`` checkpoint of its workdir when restarted.
"""

import json
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from timedistill_jax import checkpoints, crash, parallel, runs, steps
from timedistill_jax.checkpoints import write_json
from timedistill_jax.data.device import pad_batches, window_starts
from timedistill_jax.guards import LossGuard, check_metrics, check_workdir, workdir_lock
from timedistill_jax.models import count_params
from timedistill_jax.timing import PhaseClock, median_ms
from timedistill_jax.train_state import learning_rate
from timedistill_jax.validation import validate_config


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
  clock = PhaseClock()
  with clock.phase("data"):
    splits = runs.load_splits(config)  # data errors surface here, before any compilation
  run = runs.build_run(config, splits, par, clock)
  main = par.is_main_process
  if main:
    workdir.mkdir(parents=True, exist_ok=True)
  with workdir_lock(workdir, main):
    return _train(config, workdir, splits, run, par, clock, t_start)


def steps_per_call(config, spe: int) -> int:
  """The most steps in one call: ``config.train.steps_per_call``, or (0) ``log_every``. Calls
  also end at every checkpoint and at the end of each epoch."""
  tcfg = config.train
  return max(1, min(tcfg.get("steps_per_call", 0) or tcfg.log_every, spe))


def call_length(batch: int, spe: int, k: int, checkpoint_every: int) -> int:
  """Steps of the call that starts at ``batch`` of an epoch of ``spe`` steps."""
  n = min(k, spe - batch)
  if checkpoint_every:
    n = min(n, checkpoint_every - batch % checkpoint_every)
  return n


class _Progress:
  """Where training stands: the counters the ``latest`` checkpoint carries for an exact resume."""

  def __init__(self):
    self.epoch, self.next_batch, self.epoch_losses = 0, 0, []
    # The reference's patience rule, kept by hand: flax's EarlyStopping sets should_stop before
    # counting the current epoch, so it would stop one epoch later than the reference.
    self.best_val, self.bad_epochs, self.best_epoch = float("inf"), 0, -1

  def metadata(self, epoch, next_batch, losses, loss_reference) -> dict:
    return {"epoch": epoch, "next_batch": next_batch, "epoch_losses": losses,
            "best_val": self.best_val, "bad_epochs": self.bad_epochs,
            "best_epoch": self.best_epoch, "loss_reference": loss_reference}

  def resume(self, meta: dict, spe: int) -> None:
    self.best_val, self.bad_epochs = meta["best_val"], meta["bad_epochs"]
    self.best_epoch = meta["best_epoch"]
    if meta["next_batch"] >= spe:
      self.epoch = meta["epoch"] + 1
    else:
      self.epoch, self.next_batch = meta["epoch"], meta["next_batch"]
      self.epoch_losses = meta["epoch_losses"]


def _train(config, workdir: Path, splits, run: runs.Run, par, clock: PhaseClock,
           t_start: float) -> dict:
  main = par.is_main_process
  done = workdir / "results.json"
  if main:
    write_json(workdir / "config.json", config.to_dict())
  meta_base = {"config": config.to_dict(), "data": splits.metadata(),
               "model": config.model.name, "num_params": count_params(
                   {"params": run.state.params["model"]})} | run.metadata
  spe = runs.steps_per_epoch(config, splits)
  tcfg = config.train
  k = steps_per_call(config, spe)
  # Two latest steps, so a damaged newest one falls back to the one before.
  latest = checkpoints.CheckpointStore(workdir / "checkpoints" / "latest", max_to_keep=2)
  best_store = checkpoints.CheckpointStore(workdir / "checkpoints" / "best")
  abstract = jax.eval_shape(lambda: run.state.checkpoint_tree())
  state, at = run.state, _Progress()
  guard = LossGuard(workdir, main, float(tcfg.get("divergence_factor", 0)), latest)
  if latest.latest_step() is not None:  # resume where the last checkpoint left off
    with clock.phase("checkpoints"):
      tree, meta = latest.restore_newest_good(abstract)
    state = state.from_checkpoint_tree(tree)
    at.resume(meta, spe)
    guard.reference = meta.get("loss_reference")
    print(f"resuming {workdir} at epoch {at.epoch + 1}, batch {at.next_batch} "
          f"(best val MSE {at.best_val:.4f})")
  state = par.replicate(state)

  last_save = [time.monotonic()]

  def save_latest(epoch, next_batch, losses):
    with clock.phase("checkpoints"):
      latest.save(epoch * spe + next_batch, par.unreplicate(state.checkpoint_tree()),
                  meta_base | at.metadata(epoch, next_batch, losses, guard.reference))
    last_save[0] = time.monotonic()

  epoch_ms = []
  log = open(workdir / "metrics.jsonl", "a") if main else None
  try:
    for epoch in range(at.epoch, tcfg.epochs):
      if at.bad_epochs >= tcfg.patience:
        break
      lr = learning_rate(config.optim, spe, tcfg.epochs, epoch * spe)
      first = at.next_batch if epoch == at.epoch else 0
      losses = list(at.epoch_losses) if epoch == at.epoch else []
      bar = tqdm(total=spe, initial=first, desc=f"epoch {epoch + 1}/{tcfg.epochs}", leave=False,
                 disable=not (tcfg.progress and main), dynamic_ncols=True)
      starts, masks = window_starts(splits.train, run.offsets["train"], config.data.batch_size,
                                    shuffle=True, seed=config.seed, epoch=epoch)
      t0 = time.perf_counter()
      b = first
      while b < spe:
        n = call_length(b, spe, k, tcfg.checkpoint_every)
        start, mask = pad_batches(starts[b:b + n], masks[b:b + n], k)  # [k, B]
        with clock.phase("steps"):
          state, m = run.step_fn(state, start, mask, n)
          m = jax.device_get(m)
        step_metrics = [{name: float(v[j]) for name, v in m.items()} for j in range(n)]
        guard.check([(epoch, epoch * spe + b + j + 1, step_metrics[j],
                      starts[b + j][masks[b + j] > 0] - run.offsets["train"])
                     for j in range(n)])
        for j in range(n):
          crash.after_step(epoch * spe + b + j + 1)
        losses += step_metrics
        b += n
        bar.update(n)
        bar.set_postfix(loss=f"{step_metrics[-1]['loss']:.4f}")
        every, seconds = tcfg.checkpoint_every, tcfg.get("checkpoint_seconds", 0)
        if b < spe and ((every and b % every == 0)
                        or (seconds and time.monotonic() - last_save[0] >= seconds)):
          save_latest(epoch, b, losses)
      epoch_ms.append(1000 * (time.perf_counter() - t0) / max(1, spe - first))
      bar.close()
      train_metrics = {name: float(np.mean([x[name] for x in losses])) for name in losses[0]}
      with clock.phase("evaluation"):
        val = run.evaluate(runs.eval_variables(state), "val")
      check_metrics(val, "validation", f"epoch {epoch + 1}")
      improved = val["mse"] < at.best_val
      if improved:
        at.best_val, at.bad_epochs, at.best_epoch = val["mse"], 0, epoch
        with clock.phase("checkpoints"):
          host_tree = par.unreplicate(state.checkpoint_tree())
          best_store.save(epoch, {"params": host_tree["params"],
                                  "batch_stats": host_tree["batch_stats"]},
                          meta_base | {"epoch": epoch, "val": val})
      else:
        at.bad_epochs += 1
      save_latest(epoch, spe, [])
      if main:
        record = {"epoch": epoch + 1, "lr": lr, "train": train_metrics, "val": val,
                  "ms_per_step": epoch_ms[-1], "best_epoch": at.best_epoch + 1}
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(f"epoch {epoch + 1}: train loss {train_metrics['loss']:.4f}  val MSE "
              f"{val['mse']:.4f}{'  (best)' if improved else ''}  lr {lr:.2e}  "
              f"{epoch_ms[-1]:.1f} ms/step")
  finally:
    if log:
      log.close()
    latest.close()

  with clock.phase("checkpoints"):
    best_tree, best_meta = best_store.restore(
        {"params": abstract["params"], "batch_stats": abstract["batch_stats"]})
  variables = steps.model_variables(best_tree["params"]["model"], best_tree["batch_stats"])
  with clock.phase("evaluation"):
    test = run.evaluate(par.replicate(variables), "test")
  check_metrics(test, "test", f"the best epoch {best_meta['epoch'] + 1}")
  with clock.phase("inference timing"):
    inference_ms = _inference_ms(run.model, variables, splits)
  results = {
      "kind": config.get("kind", "student"), "dataset": config.data.name,
      "model": config.model.name, "pred_len": config.data.pred_len, "seed": config.seed,
      "test": test, "best_val": best_meta["val"], "best_epoch": best_meta["epoch"] + 1,
      "epochs": len(epoch_ms) + at.epoch, "num_params": meta_base["num_params"],
      "ms_per_train_step": float(np.median(epoch_ms[1:] or epoch_ms)) if epoch_ms else None,
      "inference_ms_per_batch": inference_ms,
      "steps_per_call": k,
      "smoke": bool(config.get("smoke", False)),
      "parallel": {"mode": par.mode, "devices": par.num_devices,
                   "processes": jax.process_count()},
  } | {key: v for key, v in run.metadata.items()
       if key in ("teachers", "num_regressor_params")}
  if main:
    best_store.update_metadata(None, {"test": test})  # the checkpoint alone describes the model
    wall = time.time() - t_start
    results |= {"wall_seconds": wall, "seconds": clock.report(wall)}
    write_json(done, results)
    print(f"test: MSE {test['mse']:.4f}  MAE {test['mae']:.4f}  ({test['windows']} windows)")
  best_store.close()
  return results


def _inference_ms(model, variables, splits) -> float:
  """Median ms of one eval-mode forward pass on a batch of (up to) 32 training windows."""
  sample = runs.sample_batch(splits, min(32, len(splits.train)))
  predict = jax.jit(lambda v, b: steps.predict_step(v, b, model=model))
  return median_ms(predict, variables, sample)
