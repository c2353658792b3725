"""What stops a run before it can do harm: a workdir that cannot be one or holds another run, a
second process on the same workdir, a non-finite or diverging loss, a non-finite metric.

Each check ends in one ``TimeDistillError`` naming the problem and the fix (docs/reliability.md).
"""

import contextlib
import fcntl
import json
import os
from pathlib import Path

import numpy as np

from timedistill_jax.checkpoints import write_json
from timedistill_jax.errors import ConfigError, NumericsError


def check_metrics(metrics: dict, split: str, when: str) -> None:
  """A non-finite MSE or MAE over a split is an error, never a NaN in the results (MAPE and
  MSPE are inf wherever a target is 0, as the reference's)."""
  bad = [k for k in ("mse", "mae") if not np.isfinite(metrics[k])]
  if bad:
    raise NumericsError(
        f"the {split} {', '.join(bad)} is {metrics[bad[0]]} at {when}: the model's forecasts "
        f"overflowed on the {split} windows. Check the {split} rows of the data for extreme "
        "values, or lower optim.lr.")


# Keys a resumed run may change: they cannot change its result.
RESUME_FREE_KEYS = ("train.progress", "train.tensorboard", "train.log_every", "train.epochs",
                    "train.steps_per_call", "train.checkpoint_every", "train.checkpoint_seconds",
                    "data.data_dir",
                    "parallel.coordinator_address", "parallel.num_processes",
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

  Called after every call of the step, with each of its steps, so a bad step is never saved.
  ``pending`` holds ``(epoch, step, metrics, window indices)``. A loss is diverged when it
  exceeds ``factor`` times the run's first loss (``config.train.divergence_factor``; 0: off);
  that first loss is kept in the checkpoints, so a resumed run judges by the same bound.
  """

  def __init__(self, workdir: Path, main: bool, factor: float, latest, reference=None,
               checkpoints: Path | None = None):
    self.workdir, self.main, self.factor, self.latest = workdir, main, factor, latest
    self.reference = reference
    self.checkpoints = checkpoints or workdir / "checkpoints"  # where the good ones are kept

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
    kept = (f"its last good checkpoint is kept in {self.checkpoints}"
            if self.latest.latest_step() is not None else "no checkpoint had been saved yet")
    label = "the loss" if part == "loss" else f"the {part!r} loss"
    raise NumericsError(
        f"{label} {what} at step {step} (epoch {epoch + 1}); the run stopped and "
        f"{kept}. The training windows of that batch are listed in {path}. Lower optim.lr, or "
        "check the data of those windows.")
