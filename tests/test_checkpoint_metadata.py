"""The checkpoint metadata is covered by a hash: an edited value is damage, not a new truth."""

import json

import numpy as np
import pytest

from timedistill_jax.checkpoints import CheckpointStore
from timedistill_jax.errors import CheckpointError

TREE = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
ABSTRACT = {"w": np.zeros((2, 3), np.float32)}


def _metadata_file(store, step):
  return store.directory / str(step) / "metadata" / "metadata"


def test_any_edit_of_the_metadata_is_reported(tmp_path):
  with CheckpointStore(tmp_path / "latest", max_to_keep=2) as store:
    store.save(1, TREE, {"next_batch": 100, "best_val": 0.5})
    store.save(2, TREE, {"next_batch": 200, "best_val": 0.4})
    path = _metadata_file(store, 2)
    meta = json.loads(path.read_text())
    assert meta["next_batch"] == 200 and len(meta["metadata_sha256"]) == 64
    meta["next_batch"] = 201  # still valid JSON, and plausible
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="changed after it was written"):
      store.read_metadata(2)
    # Resuming falls back to the older, intact step.
    tree, older = store.restore_newest_good(ABSTRACT)
    assert older["next_batch"] == 100 and older["step"] == 1
    np.testing.assert_array_equal(tree["w"], TREE["w"])


def test_updated_metadata_stays_verifiable(tmp_path):
  with CheckpointStore(tmp_path / "best") as store:
    store.save(3, TREE, {"val": {"mse": 0.3}})
    store.update_metadata(None, {"test": {"mse": 0.31}})
    _, meta = store.restore(ABSTRACT)
    assert meta["test"] == {"mse": 0.31} and meta["val"] == {"mse": 0.3}
    assert "metadata_sha256" not in meta  # the hash is checked, not handed on


@pytest.mark.parametrize("keep,fix", [(1, "keeps a single step, so there is none to fall back "
                                         "to: delete the run's workdir"),
                                      (2, "fall back to the one before it")])
def test_the_fix_fits_the_store(tmp_path, keep, fix):
  with CheckpointStore(tmp_path / "store", max_to_keep=keep) as store:
    store.save(1, TREE, {"val": 1.0})
    path = _metadata_file(store, 1)
    path.write_text(path.read_text().replace('"val": 1.0', '"val": 0.5'))
    with pytest.raises(CheckpointError, match=fix):
      store.restore(ABSTRACT)
