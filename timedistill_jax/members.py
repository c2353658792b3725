"""Where each member of a run stands, for the loop: early stopping, the loss guard, the best
state, the counters a ``latest`` checkpoint carries for an exact resume, and what the run reports.

A single run is a run of one member, and keeps the JSON layout it always had (scalars in its
checkpoint metadata, one set of metrics in ``results.json``). An ensemble keeps lists, one entry
a member, writes ``results.json`` for the whole (the mean over members of each metric, and
``members``: each member's own results) and, at the end, each finished member as a run folder of
its own, ``members/<m>/``, that ``runs.restore_run`` reads like any run (a teacher, a conversion).
"""

from pathlib import Path

import numpy as np

from timedistill_jax.checkpoints import CheckpointStore, write_json
from timedistill_jax.errors import NumericsError
from timedistill_jax.guards import LossGuard, check_metrics
from timedistill_jax.runs.ensemble import member_tree, select_members

MEMBER_KEYS = ("seed", "lr", "alpha", "beta", "variant")


class Members:
  """The loop's bookkeeping, one entry a member. ``stopped[m]`` is None while member ``m``
  trains, ``"early stop"`` after its patience ran out, or the message of what failed."""

  def __init__(self, run, workdir: Path, main: bool, factor: float, latest):
    self.run, self.workdir, self.main = run, workdir, main
    self.ensemble = run.members is not None
    n = len(run.members) if self.ensemble else 1
    if self.ensemble and main:
      for m in range(n):
        self.member_dir(m).mkdir(parents=True, exist_ok=True)
    self.guards = [LossGuard(self.member_dir(m), main, factor, latest,
                             checkpoints=workdir / "checkpoints") for m in range(n)]
    self.epoch, self.next_batch, self.epoch_losses = 0, 0, [[] for _ in range(n)]
    # The reference's patience rule, kept by hand: flax's EarlyStopping sets should_stop before
    # counting the current epoch, so it would stop one epoch later than the reference.
    self.best_val = np.full(n, np.inf)
    self.bad_epochs = np.zeros(n, int)
    self.best_epoch = np.full(n, -1)
    self.epochs_done = np.zeros(n, int)
    self.stopped = [None] * n
    self.val, self.best_val_metrics, self.train = [None] * n, [None] * n, [None] * n
    self.best_tree = None  # an ensemble's best states, stacked, on the host

  def member_dir(self, m: int) -> Path:
    return self.workdir / "members" / str(m) if self.ensemble else self.workdir

  @property
  def active(self) -> np.ndarray:
    return np.array([s is None for s in self.stopped])

  @property
  def has_best(self) -> np.ndarray:
    return self.best_epoch >= 0

  def failures(self) -> list:
    return [f"member {m}: {s}" for m, s in enumerate(self.stopped)
            if s not in (None, "early stop")]

  def _fail(self, m: int, error: NumericsError) -> None:
    if not self.ensemble:
      raise error
    self.stopped[m] = str(error)
    print(f"member {m} stopped: {error}")

  # -- steps and epochs -------------------------------------------------------------------------

  def check_steps(self, epoch, step0, n, metrics, starts, masks, losses) -> None:
    """Every step of a call, member by member: the loss guard, then the epoch's losses."""
    offset = self.run.offsets["train"]
    for m, guard in enumerate(self.guards):
      if self.stopped[m] is not None:
        continue
      steps = [{name: float(v[m, j]) for name, v in metrics.items()} for j in range(n)]
      try:
        guard.check([(epoch, step0 + j + 1, steps[j], starts[m, j][masks[m, j] > 0] - offset)
                      for j in range(n)])
      except NumericsError as e:
        self._fail(m, e)
        continue
      losses[m] += steps

  def live_loss(self, losses) -> str:
    last = [x[-1]["loss"] for x, s in zip(losses, self.stopped) if s is None and x]
    return f"{np.mean(last):.4f}" if last else "-"

  def end_epoch(self, epoch: int, vals: list, losses: list, patience: int) -> np.ndarray:
    """Validation, early stopping and the epoch's training means; which members improved."""
    improved = np.zeros(len(self.guards), bool)
    for m, val in enumerate(vals):
      if self.stopped[m] is not None:
        continue
      self.epochs_done[m] += 1
      self.train[m] = {k: float(np.mean([x[k] for x in losses[m]])) for k in losses[m][0]}
      try:
        check_metrics(val, "validation", f"epoch {epoch + 1}")
      except NumericsError as e:
        self._fail(m, e)
        continue
      self.val[m] = val
      if val["mse"] < self.best_val[m]:
        self.best_val[m], self.bad_epochs[m], self.best_epoch[m] = val["mse"], 0, epoch
        self.best_val_metrics[m], improved[m] = val, True
      else:
        self.bad_epochs[m] += 1
        if self.bad_epochs[m] >= patience:
          self.stopped[m] = "early stop"
    return improved

  def update_best(self, improved, tree):
    """The tree to save as ``best``: this one, or for an ensemble each member's best so far."""
    if not self.ensemble:
      return tree
    self.best_tree = tree if self.best_tree is None else select_members(improved, tree,
                                                                        self.best_tree)
    return self.best_tree

  @staticmethod
  def best_abstract(abstract) -> dict:
    return {"params": abstract["params"], "batch_stats": abstract["batch_stats"]}

  def best_metadata(self, epoch: int) -> dict:
    if not self.ensemble:
      return {"epoch": epoch, "val": self.val[0]}
    return {"epoch": epoch, "val": self.best_val_metrics,
            "best_epochs": [int(e) for e in self.best_epoch]}

  # -- resume -------------------------------------------------------------------------------

  def metadata(self, epoch: int, next_batch: int, losses) -> dict:
    """The counters a ``latest`` checkpoint carries."""
    meta = {"epoch": epoch, "next_batch": next_batch}
    refs = [g.reference for g in self.guards]
    if not self.ensemble:  # the layout single runs have always had
      return meta | {"epoch_losses": losses[0], "best_val": float(self.best_val[0]),
                     "bad_epochs": int(self.bad_epochs[0]),
                     "best_epoch": int(self.best_epoch[0]), "loss_reference": refs[0],
                     "epochs_done": int(self.epochs_done[0])}
    return meta | {"epoch_losses": losses, "best_val": [float(v) for v in self.best_val],
                   "bad_epochs": [int(v) for v in self.bad_epochs],
                   "best_epoch": [int(v) for v in self.best_epoch], "loss_reference": refs,
                   "epochs_done": [int(v) for v in self.epochs_done], "stopped": self.stopped,
                   "best_val_metrics": self.best_val_metrics}

  def resume(self, meta: dict, spe: int) -> None:
    as_list = (lambda v: [v]) if not self.ensemble else list
    self.best_val = np.asarray(as_list(meta["best_val"]), float)
    self.bad_epochs = np.asarray(as_list(meta["bad_epochs"]), int)
    self.best_epoch = np.asarray(as_list(meta["best_epoch"]), int)
    for guard, ref in zip(self.guards, as_list(meta.get("loss_reference"))):
      guard.reference = ref
    finished = meta["next_batch"] >= spe
    # Checkpoints written before "epochs_done" existed: the epochs before the saved one.
    self.epochs_done = np.asarray(as_list(meta.get(
        "epochs_done", meta["epoch"] + int(finished))), int)
    if self.ensemble:
      self.stopped = list(meta["stopped"])
      self.best_val_metrics = list(meta["best_val_metrics"])
    else:
      patience = self.run.member_configs[0].train.patience
      self.stopped = ["early stop" if self.bad_epochs[0] >= patience else None]
    if finished:
      self.epoch = meta["epoch"] + 1
    else:
      self.epoch, self.next_batch = meta["epoch"], meta["next_batch"]
      self.epoch_losses = meta["epoch_losses"] if self.ensemble else [meta["epoch_losses"]]

  def restored_best(self, meta: dict) -> None:
    """A single run's best epoch and validation metrics, as its ``best`` checkpoint has them
    (a resumed run may not have seen that epoch)."""
    if not self.ensemble:
      self.best_epoch[0], self.best_val_metrics[0] = meta["epoch"], meta["val"]

  # -- reports ------------------------------------------------------------------------------

  def best_val_text(self) -> str:
    return f"{np.min(self.best_val):.4f}"

  def record(self, epoch: int, lrs: list, ms: float) -> dict:
    """The epoch's line of ``metrics.jsonl``."""
    if not self.ensemble:
      return {"epoch": epoch + 1, "lr": lrs[0], "train": self.train[0], "val": self.val[0],
              "ms_per_step": ms, "best_epoch": int(self.best_epoch[0]) + 1}
    return {"epoch": epoch + 1, "ms_per_step": ms, "members": [
        {"lr": lr, "train": t, "val": v, "best_epoch": int(b) + 1, "stopped": s}
        for lr, t, v, b, s in zip(lrs, self.train, self.val, self.best_epoch, self.stopped)]}

  def epoch_line(self, epoch: int, lr: float, ms: float) -> str:
    if not self.ensemble:
      best = "  (best)" if self.best_epoch[0] == epoch else ""
      return (f"epoch {epoch + 1}: train loss {self.train[0]['loss']:.4f}  val MSE "
              f"{self.val[0]['mse']:.4f}{best}  lr {lr:.2e}  {ms:.1f} ms/step")
    vals = [v["mse"] for v, s in zip(self.val, self.stopped) if v is not None]
    return (f"epoch {epoch + 1}: {int(self.active.sum())} of {len(self.guards)} members "
            f"training  val MSE {np.min(vals):.4f} best / {np.mean(vals):.4f} mean  "
            f"{int((self.best_epoch == epoch).sum())} improved  {ms:.1f} ms/step")

  def member_results(self, m: int, test) -> dict:
    """A member's keys of a single run's ``results.json``."""
    config = self.run.member_configs[m]
    out = {"seed": config.seed, "test": test, "best_val": self.best_val_metrics[m],
           "best_epoch": int(self.best_epoch[m]) + 1, "epochs": int(self.epochs_done[m])}
    if self.ensemble:
      spec = self.run.members[m]
      out |= {k: spec[k] for k in MEMBER_KEYS if k in spec} | {
          "stopped": self.stopped[m], "workdir": str(Path("members") / str(m))}
    return out

  def results(self, tests: list, epochs_this_process: int) -> dict:
    if not self.ensemble:
      return self.member_results(0, tests[0])
    del epochs_this_process
    done = [m for m in range(len(tests)) if self.has_best[m]]
    mean = lambda rows: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return {"seed": self.run.member_configs[0].seed,
            "test": mean([tests[m] for m in done]),
            "best_val": mean([self.best_val_metrics[m] for m in done]),
            "best_epoch": int(max(self.best_epoch[m] for m in done)) + 1,
            "epochs": int(self.epochs_done.max()), "aggregate": "mean over members",
            "members": [self.member_results(m, tests[m] if self.has_best[m] else None)
                        for m in range(len(tests))]}

  def test_line(self, tests: list) -> str:
    t = tests[0] if not self.ensemble else {
        k: float(np.mean([tests[m][k] for m in range(len(tests)) if self.has_best[m]]))
        for k in ("mse", "mae", "windows")}
    what = "" if not self.ensemble else f" (mean of {int(self.has_best.sum())} members)"
    return (f"test: MSE {t['mse']:.4f}  MAE {t['mae']:.4f}  ({int(t['windows'])} windows)"
            f"{what}")

  def export_members(self, best_tree, tests: list, meta_base: dict, common: dict) -> None:
    """Each finished member as a run folder of its own: config, best checkpoint, results."""
    for m, config in enumerate(self.run.member_configs):
      if not self.has_best[m]:
        continue
      folder = self.member_dir(m)
      meta = meta_base | {"config": config.to_dict(), "epoch": int(self.best_epoch[m]),
                          "val": self.best_val_metrics[m], "test": tests[m],
                          "ensemble": {"workdir": str(self.workdir), "member": m}}
      with CheckpointStore(folder / "checkpoints" / "best") as store:
        store.save(int(self.best_epoch[m]), member_tree(best_tree, m), meta)
      write_json(folder / "config.json", config.to_dict())
      own = {k: v for k, v in self.member_results(m, tests[m]).items() if k != "workdir"}
      write_json(folder / "results.json", common | own | {"ensemble": meta["ensemble"]})
