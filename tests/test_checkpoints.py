"""Orbax checkpoints: round trip, metadata, damage detection, teacher rebuilding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from timedistill_jax.checkpoints import CheckpointStore, tree_sha256
from timedistill_jax.errors import CheckpointError


def _tree():
  return {"params": {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(4)},
          "step": jnp.array(7), "rng": jax.random.PRNGKey(3)}


def _abstract(tree):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def test_round_trip_with_metadata(tmp_path):
  tree = _tree()
  with CheckpointStore(tmp_path / "best") as store:
    store.save(5, tree, {"config": {"a": 1}, "data": {"scaler_mean": [0.5]}})
    restored, meta = store.restore(_abstract(tree))
  jax.tree.map(np.testing.assert_array_equal, restored, tree)
  assert meta["config"] == {"a": 1} and meta["data"]["scaler_mean"] == [0.5]
  assert meta["step"] == 5 and meta["arrays_sha256"] == tree_sha256(tree)
  assert meta["files_sha256"]  # every saved array file is hashed


def test_latest_keeps_only_the_newest_step(tmp_path):
  with CheckpointStore(tmp_path / "latest") as store:
    for step in range(3):
      store.save(step, _tree(), {})
    assert store.all_steps() == [2]


def _damage(directory):
  files = sorted(p for p in (directory / "state").rglob("*") if p.is_file() and p.stat().st_size)
  target = max(files, key=lambda p: p.stat().st_size)  # the array data
  data = bytearray(target.read_bytes())
  data[len(data) // 2] ^= 0xFF
  target.write_bytes(bytes(data))


def test_flipped_byte_is_reported_not_restored(tmp_path):
  with CheckpointStore(tmp_path / "best") as store:
    store.save(1, _tree(), {})
  _damage(tmp_path / "best" / "1")
  with CheckpointStore(tmp_path / "best", create=False) as store:
    with pytest.raises(CheckpointError, match="damaged"):
      store.restore(_abstract(_tree()))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(CheckpointError, match="no checkpoints"):
    CheckpointStore(tmp_path / "nothing", create=False)


def _largest_file(step_dir):
  return max((p for p in (step_dir / "state").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["truncate", "delete_array_file", "delete_metadata",
                                    "delete_state", "garble_metadata", "empty_file"])
def test_every_kind_of_damage_is_caught(tmp_path, damage):
  with CheckpointStore(tmp_path / "best") as store:
    store.save(1, _tree(), {})
  step = tmp_path / "best" / "1"
  if damage == "truncate":
    f = _largest_file(step)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  elif damage == "delete_array_file":
    _largest_file(step).unlink()
  elif damage == "delete_metadata":
    (step / "metadata" / "metadata").unlink()
  elif damage == "delete_state":
    import shutil
    shutil.rmtree(step / "state")
  elif damage == "garble_metadata":
    (step / "metadata" / "metadata").write_text("{not json")
  elif damage == "empty_file":
    _largest_file(step).write_bytes(b"")
  with CheckpointStore(tmp_path / "best", create=False) as store:
    with pytest.raises(CheckpointError):
      store.restore(_abstract(_tree()))

