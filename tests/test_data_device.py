"""timedistill_jax/data/device.py: windows gathered on the device are the host pipeline's
windows, in the same order, with the same padded and masked last batch."""

import jax
import numpy as np
import pytest

from tests.helpers import RUN_H, RUN_L, RUN_S
from timedistill_jax.data import iterate_batches, load_dataset
from timedistill_jax.data.device import (SPLITS, device_data, pad_batches, split_offsets,
                                         window_starts)


@pytest.fixture(scope="module")
def splits():
  return load_dataset("synthetic", seq_len=RUN_L, label_len=RUN_S, pred_len=RUN_H)


@pytest.mark.parametrize("name, shuffle", [("train", True), ("val", False), ("test", False)])
def test_gathered_batches_are_the_host_batches(splits, name, shuffle):
  split, batch_size = getattr(splits, name), 48
  assert len(split) % batch_size, "the last batch must be a padded one"
  data = jax.device_put(device_data(splits))
  offset = split_offsets(splits)[name]
  starts, masks = window_starts(split, offset, batch_size, shuffle=shuffle, seed=3, epoch=2)
  gather = jax.jit(lambda d, s, m: d.gather(s, m))
  host = list(iterate_batches(split, batch_size, shuffle=shuffle, seed=3, epoch=2))
  assert len(host) == len(starts)
  for b, want in enumerate(host):
    np.testing.assert_array_equal(starts[b] - offset, want["index"])
    got = gather(data, starts[b], masks[b])
    for key in ("x", "y", "x_mark", "y_mark", "mask"):
      np.testing.assert_array_equal(np.asarray(got[key]), want[key], err_msg=f"{key}, batch {b}")
  assert masks[-1].sum() == len(split) % batch_size and masks[:-1].all()


def test_teacher_outputs_are_gathered_by_window(splits):
  n = len(splits.train)
  pred = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, RUN_H, 7), np.float32)
  hidden = -np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 7, 5), np.float32)
  data = device_data(splits).with_teacher_outputs([pred], [hidden])
  starts, masks = window_starts(splits.train, 0, 16, shuffle=True, seed=1, epoch=0)
  batch = data.gather(starts[4], masks[4])
  np.testing.assert_array_equal(batch["teacher_pred"][0][:, 0, 0], starts[4])
  np.testing.assert_array_equal(batch["teacher_hidden"][0][:, 0, 0], -starts[4])


def test_rows_end_to_end_and_offsets(splits):
  data, offsets = device_data(splits), split_offsets(splits)
  for name in SPLITS:
    split = getattr(splits, name)
    np.testing.assert_array_equal(data.rows[offsets[name]:offsets[name] + len(split.data)],
                                  split.data)
  assert len(data.rows) == sum(len(getattr(splits, n).data) for n in SPLITS)


def test_padding_adds_masked_batches_only():
  start, mask = np.arange(6).reshape(2, 3), np.ones((2, 3), np.float32)
  s, m = pad_batches(start, mask, 4)
  assert s.shape == (4, 3) and m[2:].sum() == 0 and (s[:2] == start).all()
  assert pad_batches(start, mask, 2)[0] is start
