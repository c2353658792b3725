"""Orbax checkpoints: arrays plus JSON metadata, verified on restore.

Layout of a run's workdir::

    checkpoints/latest/<step>/{state, metadata}   # for resuming: the whole TrainState
    checkpoints/best/<step>/{state, metadata}     # best validation so far: what gets evaluated

Each step is one Orbax composite item: ``state`` (a pytree of arrays, restored into an abstract
target built with ``jax.eval_shape``) and ``metadata`` (JSON: the full config, the dataset's
scaler statistics, the metrics at save time, ``arrays_sha256`` over the array contents and
``files_sha256`` over the saved files, and ``metadata_sha256`` over the rest of the JSON).
Restoring checks all three, so a flipped byte or an edited value is reported instead of being
restored as garbage.
"""

import contextlib
import hashlib
import json
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from timedistill_jax import crash
from timedistill_jax.errors import CheckpointError

_METADATA_FILE = ("metadata", "metadata")  # where Orbax's JsonSave puts the JSON in a step


def tree_sha256(tree) -> str:
  """sha256 over a pytree's leaf paths, dtypes, shapes and bytes (host order, deterministic)."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    arr = np.asarray(jax.device_get(leaf))
    h.update(jax.tree_util.keystr(path).encode())
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
  return h.hexdigest()


def metadata_sha256(metadata: dict) -> str:
  """sha256 of the metadata as canonical JSON (sorted keys), so any edit of a value shows."""
  text = json.dumps(metadata, sort_keys=True, default=float, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def files_sha256(directory: Path) -> dict:
  """sha256 of every file below ``directory``, keyed by relative path."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in sorted(files):
      path = Path(root) / name
      out[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
  return dict(sorted(out.items()))


def write_json(path, obj) -> None:
  """Writes ``obj`` as JSON atomically (a crash leaves the old file or the new one)."""
  path = Path(path)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=float))
  os.replace(tmp, path)


@contextlib.contextmanager
def _quiet_absl():
  level = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    yield
  finally:
    absl_logging.set_verbosity(level)


class CheckpointStore:
  """One Orbax ``CheckpointManager`` (``latest`` or ``best``) with integrity metadata."""

  def __init__(self, directory, *, max_to_keep: int = 1, create: bool = True):
    self.directory = Path(directory).absolute()
    self._max_to_keep = max_to_keep
    if not create and not self.directory.exists():
      raise CheckpointError(f"no checkpoints at {self.directory}")
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=create, enable_async_checkpointing=False),
        item_names=("state", "metadata"))

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self) -> None:
    self._manager.close()

  def all_steps(self) -> list:
    return list(self._manager.all_steps())

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step: int, state_tree, metadata: dict) -> None:
    """Saves ``state_tree`` and ``metadata`` as step ``step``; adds the two hashes."""
    state_tree = jax.device_get(state_tree)
    metadata = dict(metadata, step=int(step), arrays_sha256=tree_sha256(state_tree))
    if int(step) in self.all_steps():  # a resumed run redoes a step it had saved before
      self._manager.delete(int(step))
    self._manager.save(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state_tree), metadata=ocp.args.JsonSave(metadata)),
        force=True)
    self._manager.wait_until_finished()
    crash.during_save()
    if jax.process_index() == 0:  # Orbax writes collectively; the hashes are written once
      step_dir = self.directory / str(int(step))
      metadata["files_sha256"] = files_sha256(step_dir / "state")
      self._write_metadata(step, metadata)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"checkpoint {self.directory} {step}")

  def update_metadata(self, step, extra: dict) -> None:
    """Adds ``extra`` to a saved step's metadata (e.g. test metrics known after saving)."""
    step = self._resolve(step)
    metadata = self.read_metadata(step) | extra
    self._write_metadata(step, metadata)

  def _write_metadata(self, step: int, metadata: dict) -> None:
    metadata = {k: v for k, v in metadata.items() if k != "metadata_sha256"}
    metadata["metadata_sha256"] = metadata_sha256(metadata)
    write_json(self.directory.joinpath(str(step), *_METADATA_FILE), metadata)

  def read_metadata(self, step=None) -> dict:
    """The step's metadata, refused as damage when it differs from what was written."""
    step = self._resolve(step)
    path = self.directory.joinpath(str(step), *_METADATA_FILE)
    try:
      metadata = json.loads(path.read_text())
    except (OSError, ValueError) as e:
      raise CheckpointError(
          f"checkpoint metadata {path} is missing or unreadable ({e}); the checkpoint is "
          f"damaged: {self._fix()}") from e
    expected = metadata.pop("metadata_sha256", None)  # absent in checkpoints of 0.1.0
    if expected is not None and metadata_sha256(metadata) != expected:
      raise CheckpointError(
          f"checkpoint metadata {path} was changed after it was written (sha256 mismatch); "
          f"the checkpoint is damaged: {self._fix()}")
    return metadata

  def _fix(self) -> str:
    """What to do about a damaged step: a store that keeps one step has nothing older."""
    if self._max_to_keep > 1:
      return "remove this step to fall back to the one before it, or retrain."
    return ("this store keeps a single step, so there is none to fall back to: delete the run's "
            "workdir and train it again.")

  def _check_files(self, step: int) -> dict:
    """The step's metadata, once its saved files match the sha256 recorded at save time."""
    metadata = self.read_metadata(step)
    where = self.directory / str(step)
    expected = metadata.get("files_sha256")
    if expected is not None and files_sha256(where / "state") != expected:
      raise CheckpointError(
          f"checkpoint {where} is damaged: its files do not match the sha256 recorded at save "
          f"time: {self._fix()}")
    return metadata

  def saved_shapes(self, step=None):
    """The saved state tree as ``jax.ShapeDtypeStruct`` leaves, read from Orbax's metadata
    (after the file check, so a damaged tree description is reported as damage)."""
    step = self._resolve(step)
    self._check_files(step)
    try:
      with _quiet_absl():  # Orbax warns about an optional file our saves do not write
        meta = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state")
    except Exception as e:  # Orbax raises many types for a missing or garbled tree
      raise CheckpointError(f"checkpoint {self.directory / str(step)} is unreadable: "
                            f"{type(e).__name__}: {str(e)[:300]}") from e
    tree = getattr(meta, "item_metadata", meta)
    tree = getattr(tree, "tree", tree)
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)

  def restore(self, abstract_tree, step=None):
    """Restores step ``step`` (default: latest) into ``abstract_tree``; returns (tree, metadata).

    ``abstract_tree`` is a pytree of ``jax.ShapeDtypeStruct`` (e.g. from ``jax.eval_shape``).
    """
    step = self._resolve(step)
    metadata = self._check_files(step)
    where = self.directory / str(step)
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_tree)))
    except Exception as e:  # Orbax/tensorstore raise many types for a bad or mismatched tree
      raise CheckpointError(
          f"could not restore {where}: {type(e).__name__}: {str(e)[:500]}. The checkpoint is "
          "damaged or was written for another model or config.") from e
    tree = restored.state
    if tree_sha256(tree) != metadata["arrays_sha256"]:
      raise CheckpointError(
          f"checkpoint {where} restored different values than were saved (sha256 mismatch); "
          f"it is damaged: {self._fix()}")
    return tree, metadata

  def restore_newest_good(self, abstract_tree):
    """Restores the newest step that passes its checks; a damaged one is reported and skipped."""
    errors = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        return self.restore(abstract_tree, step)
      except CheckpointError as e:
        print(f"warning: skipping damaged checkpoint step {step}: {e}")
        errors.append(str(e))
    raise CheckpointError(
        f"no usable checkpoint in {self.directory}: " + " | ".join(errors) + " Delete the "
        "folder to start the run again.")

  def _resolve(self, step):
    if step is None:
      step = self.latest_step()
    if step is None:
      raise CheckpointError(f"no checkpoint saved in {self.directory} yet.")
    return int(step)
