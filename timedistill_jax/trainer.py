"""``train_and_evaluate``: epochs, learning-rate schedule, early stopping, logs, checkpoints.

One loop serves every run kind (a teacher, the student alone, the distilled student), one model
or an ensemble of many: the kind only decides how the state is built and which step runs
(``runs.RUN_KINDS``), and a single run is a run of one member. The loop

* validates the config and loads the data before anything is compiled or written;
* runs many steps per call (``config.train.steps_per_call``; by default up to ``log_every``),
  each step gathering its windows from data placed on the device once, with each member's
  seeded per-epoch shuffle; the progress bar and the live loss update per call, and every step's
  loss is checked (``guards.LossGuard``);
* evaluates validation MSE over every window each epoch in one call, keeps ``best`` and
  ``latest`` checkpoints apart, and stops each member early with the reference's patience rule
  (a stopped member of an ensemble is no longer looked at while the others go on);
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
from timedistill_jax.data.device import pad_batches
from timedistill_jax.errors import NumericsError
from timedistill_jax.events import EventLog
from timedistill_jax.guards import check_metrics, check_workdir, workdir_lock
from timedistill_jax.members import Members
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
  par = parallel.DataParallel(config.parallel.mode, config.parallel.get("member_devices", 1))
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


def _train(config, workdir: Path, splits, run: runs.Run, par, clock: PhaseClock,
           t_start: float) -> dict:
  main = par.is_main_process
  done = workdir / "results.json"
  if main:
    write_json(workdir / "config.json", config.to_dict())
  num_params = count_params({"params": run.state.params["model"]})
  if run.members is not None:  # stacked over members: one member's count
    num_params //= len(run.members)
  meta_base = {"config": config.to_dict(), "data": splits.metadata(),
               "model": config.model.name, "num_params": num_params} | run.metadata
  spe = runs.steps_per_epoch(config, splits)
  tcfg = config.train
  k = steps_per_call(config, spe)
  # Two latest steps, so a damaged newest one falls back to the one before.
  latest = checkpoints.CheckpointStore(workdir / "checkpoints" / "latest", max_to_keep=2)
  best_store = checkpoints.CheckpointStore(workdir / "checkpoints" / "best")
  abstract = jax.eval_shape(lambda: run.state.checkpoint_tree())
  at = Members(run, workdir, main, float(tcfg.get("divergence_factor", 0)), latest)
  state = run.state
  if latest.latest_step() is not None:  # resume where the last checkpoint left off
    with clock.phase("checkpoints"):
      tree, meta = latest.restore_newest_good(abstract)
      if at.ensemble and best_store.latest_step() is not None:
        at.best_tree = best_store.restore(at.best_abstract(abstract))[0]
    state = state.from_checkpoint_tree(tree)
    at.resume(meta, spe)
    print(f"resuming {workdir} at epoch {at.epoch + 1}, batch {at.next_batch} "
          f"(best val MSE {at.best_val_text()})")
  state = run.place(state)
  last_save = [time.monotonic()]

  def save_latest(epoch, next_batch, losses):
    with clock.phase("checkpoints"):
      latest.save(epoch * spe + next_batch, run.unplace(state.checkpoint_tree()),
                  meta_base | at.metadata(epoch, next_batch, losses))
    last_save[0] = time.monotonic()

  epoch_ms = []
  log = open(workdir / "metrics.jsonl", "a") if main else None
  events = EventLog(workdir, config, None if run.members is None else len(run.members),
                    enabled=main and tcfg.get("tensorboard", True))
  try:
    for epoch in range(at.epoch, tcfg.epochs):
      if not at.active.any():
        break
      lrs = [learning_rate(c.optim, spe, tcfg.epochs, epoch * spe) for c in run.member_configs]
      first = at.next_batch if epoch == at.epoch else 0
      losses = at.epoch_losses if epoch == at.epoch else [[] for _ in at.guards]
      bar = tqdm(total=spe, initial=first, desc=f"epoch {epoch + 1}/{tcfg.epochs}", leave=False,
                 disable=not (tcfg.progress and main), dynamic_ncols=True)
      starts, masks = run.windows(epoch)  # [M, nb, B]
      t0 = time.perf_counter()
      b = first
      while b < spe:
        n = call_length(b, spe, k, tcfg.checkpoint_every)
        block = [pad_batches(s[b:b + n], m[b:b + n], k) for s, m in zip(starts, masks)]
        count = np.where(at.active, n, 0)
        with clock.phase("steps"):
          state, m = run.step_fn(state, np.stack([s for s, _ in block]),
                                 np.stack([x for _, x in block]), count)
          m = jax.device_get(m)  # {name: [M, k]}
        at.check_steps(epoch, epoch * spe + b, n, m, starts[:, b:b + n], masks[:, b:b + n],
                       losses)
        for j in range(n):
          crash.after_step(epoch * spe + b + j + 1)
        b += n
        bar.update(n)
        bar.set_postfix(loss=at.live_loss(losses))
        every, seconds = tcfg.checkpoint_every, tcfg.get("checkpoint_seconds", 0)
        if b < spe and ((every and b % every == 0)
                        or (seconds and time.monotonic() - last_save[0] >= seconds)):
          save_latest(epoch, b, losses)
      epoch_ms.append(1000 * (time.perf_counter() - t0) / max(1, spe - first))
      bar.close()
      with clock.phase("evaluation"):
        vals = run.evaluate(runs.eval_variables(state), "val")
      improved = at.end_epoch(epoch, vals, losses, tcfg.patience)
      if improved.any():
        with clock.phase("checkpoints"):
          host_tree = run.unplace(state.checkpoint_tree())
          tree = at.update_best(improved, {"params": host_tree["params"],
                                           "batch_stats": host_tree["batch_stats"]})
          best_store.save(epoch, tree, meta_base | at.best_metadata(epoch))
      save_latest(epoch, spe, [[] for _ in at.guards])
      if main:
        log.write(json.dumps(at.record(epoch, lrs, epoch_ms[-1])) + "\n")
        log.flush()
        events.epoch(epoch, lrs, at.train, at.val, 1000 / max(epoch_ms[-1], 1e-9))
        print(at.epoch_line(epoch, lrs[0], epoch_ms[-1]))
  finally:
    if log:
      log.close()
    latest.close()

  if not at.has_best.any():
    raise NumericsError(f"no member of {workdir} trained: " + "; ".join(at.failures()))
  with clock.phase("checkpoints"):
    best_tree, best_meta = best_store.restore(at.best_abstract(abstract))
  at.restored_best(best_meta)
  variables = steps.model_variables(best_tree["params"]["model"], best_tree["batch_stats"])
  with clock.phase("evaluation"):
    tests = run.evaluate(run.place(variables), "test")
  for m, test in enumerate(tests):
    if at.has_best[m]:
      where = f" of member {m}" if at.ensemble else ""
      check_metrics(test, "test", f"the best epoch{where} {at.best_epoch[m] + 1}")
  with clock.phase("inference timing"):
    one = variables if not at.ensemble else runs.ensemble.member_tree(variables, 0)
    inference_ms = _inference_ms(run.model, one, splits)
  common = {
      "kind": config.get("kind", "student"), "dataset": config.data.name,
      "model": config.model.name, "pred_len": config.data.pred_len,
      "num_params": meta_base["num_params"],
      "ms_per_train_step": float(np.median(epoch_ms[1:] or epoch_ms)) if epoch_ms else None,
      "inference_ms_per_batch": inference_ms,
      "steps_per_call": k,
      "smoke": bool(config.get("smoke", False)),
      "parallel": {"mode": par.mode, "devices": par.num_devices,
                   "processes": jax.process_count()},
  } | {key: v for key, v in run.metadata.items()
       if key in ("teachers", "num_regressor_params")}
  results = common | at.results(tests, len(epoch_ms))
  if main:
    best_store.update_metadata(None, {"test": tests[0] if not at.ensemble else tests})
    if at.ensemble:
      with clock.phase("checkpoints"):
        at.export_members(best_tree, tests, meta_base, common)
    wall = time.time() - t_start
    results |= {"wall_seconds": wall, "seconds": clock.report(wall)}
    write_json(done, results)
    events.close(run.member_configs, at.best_val_metrics,
                 [t if at.has_best[m] else None for m, t in enumerate(tests)])
    print(at.test_line(tests))
  best_store.close()
  return results


def _inference_ms(model, variables, splits) -> float:
  """Median ms of one eval-mode forward pass on a batch of (up to) 32 training windows."""
  sample = runs.sample_batch(splits, min(32, len(splits.train)))
  predict = jax.jit(lambda v, b: steps.predict_step(v, b, model=model))
  return median_ms(predict, variables, sample)
