"""Sliding windows over one split, and fixed-shape batches of them.

A split keeps only its own rows, scaled; windows are cut on demand by fancy indexing, so the
``[N, L, C]`` array of all windows never exists (for Traffic with L = 720 it would be ~40 GB).
Every batch has exactly ``batch_size`` rows: the last, short batch is padded with repeats of real
windows and carries a 0/1 ``mask``, so a jitted step traces once and metrics kept as
(sum, count) count every window exactly once.
"""

import dataclasses
import math
import operator
from typing import Iterator

import numpy as np

from timedistill_jax.errors import ConfigError, DataError


def check_window_lengths(seq_len: int, label_len: int, pred_len: int) -> None:
  """ConfigError unless ``seq_len, pred_len >= 1`` and ``0 <= label_len <= seq_len``."""
  for name, value in (("seq_len", seq_len), ("label_len", label_len), ("pred_len", pred_len)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ConfigError(f"{name} must be an integer, got {value!r}.")
  if seq_len < 1:
    raise ConfigError(f"seq_len must be >= 1, got {seq_len}.")
  if pred_len < 1:
    raise ConfigError(f"pred_len must be >= 1, got {pred_len}.")
  if not 0 <= label_len <= seq_len:
    raise ConfigError(
        f"label_len must be in [0, seq_len] = [0, {seq_len}], got {label_len}: the decoder's "
        "label part is the end of the input window.")


@dataclasses.dataclass(frozen=True, eq=False)
class WindowSplit:
  """The rows of one split and the window geometry; ``split[i]`` is the reference's item ``i``.

  Window ``i`` reads input rows ``[i, i + L)`` and target rows ``[i + L - S, i + L + H)``
  (the last ``S = label_len`` input steps, then the ``H = pred_len`` steps to forecast).
  """
  data: np.ndarray  # [T, C] float32, scaled
  marks: np.ndarray  # [T, F] float32
  seq_len: int
  label_len: int
  pred_len: int
  name: str = "train"

  def __post_init__(self):
    check_window_lengths(self.seq_len, self.label_len, self.pred_len)
    if self.data.ndim != 2 or self.marks.ndim != 2 or len(self.data) != len(self.marks):
      raise DataError(
          f"{self.name} split: data {self.data.shape} and marks {self.marks.shape} must be "
          "[T, C] and [T, F] with the same T.")
    window = self.seq_len + self.pred_len
    if window > len(self.data):
      raise DataError(
          f"the {self.name} split has {len(self.data)} rows, fewer than one window of "
          f"seq_len + pred_len = {window}; shorten seq_len or pred_len.")

  def __len__(self) -> int:
    return len(self.data) - self.seq_len - self.pred_len + 1

  @property
  def window_len(self) -> int:
    """Rows a window touches: ``seq_len + pred_len``."""
    return self.seq_len + self.pred_len

  def __getitem__(self, index):
    """``(x [L, C], y [S + H, C], x_mark [L, F], y_mark [S + H, F])`` of window ``index``."""
    i = operator.index(index)
    if not 0 <= i < len(self):
      raise IndexError(f"window {index} out of range for the {self.name} split "
                       f"({len(self)} windows)")
    s_end = i + self.seq_len
    r_begin = s_end - self.label_len
    r_end = r_begin + self.label_len + self.pred_len
    return (self.data[i:s_end], self.data[r_begin:r_end],
            self.marks[i:s_end], self.marks[r_begin:r_end])

  def get_batch(self, indices) -> dict[str, np.ndarray]:
    """The windows at ``indices`` stacked: x, y, x_mark, y_mark, each ``[B, ...]``."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
      raise IndexError(f"window indices must be a 1-D integer array, got {idx.dtype}{idx.shape}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
      bad = idx[(idx < 0) | (idx >= len(self))][0]
      raise IndexError(f"window {bad} out of range for the {self.name} split "
                       f"({len(self)} windows)")
    x_rows = idx[:, None] + np.arange(self.seq_len)  # [B, L]
    y_rows = idx[:, None] + np.arange(self.seq_len - self.label_len,
                                      self.seq_len + self.pred_len)  # [B, S + H]
    return {
        "x": self.data[x_rows],  # [B, L, C]
        "y": self.data[y_rows],  # [B, S + H, C]
        "x_mark": self.marks[x_rows],  # [B, L, F]
        "y_mark": self.marks[y_rows],  # [B, S + H, F]
    }


def num_batches(split: WindowSplit, batch_size: int) -> int:
  """Batches in one pass over ``split``: ``ceil(len(split) / batch_size)``."""
  _check_batch_size(batch_size)
  return math.ceil(len(split) / batch_size)


def _check_batch_size(batch_size: int) -> None:
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
      or batch_size < 1:
    raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")


def epoch_order(split: WindowSplit, *, shuffle: bool, seed: int = 0, epoch: int = 0) -> np.ndarray:
  """Window indices of one epoch: in order, or a permutation seeded by ``(seed, epoch)``.

  The order depends only on ``(seed, epoch)``, never on global state or on how many batches were
  drawn before, so a run resumed mid-epoch sees the order it would have seen.
  """
  if not shuffle:
    return np.arange(len(split), dtype=np.int64)
  for name, value in (("seed", seed), ("epoch", epoch)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ConfigError(f"{name} must be an integer >= 0 to seed the shuffle, got {value!r}.")
  return np.random.default_rng([int(seed), int(epoch)]).permutation(len(split)).astype(np.int64)


def iterate_batches(split: WindowSplit, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                    epoch: int = 0, start_batch: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """Yields every window of ``split`` once, in batches of exactly ``batch_size`` rows.

  Each batch is ``split.get_batch`` plus ``mask`` ``[B]`` float32 (0 on padding) and ``index``
  ``[B]`` int64 (the window index; padding rows repeat real windows of the same batch, so they
  hold valid data). ``start_batch`` skips the first batches of the epoch's order, for resuming.
  """
  total = num_batches(split, batch_size)
  if isinstance(start_batch, bool) or not isinstance(start_batch, (int, np.integer)) \
      or not 0 <= start_batch <= total:
    raise ConfigError(f"start_batch must be an integer in [0, {total}] (batches per epoch of the "
                      f"{split.name} split), got {start_batch!r}.")
  index, mask = batch_indices(split, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)
  return _batches(split, index, mask, start_batch)


def batch_indices(split: WindowSplit, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                  epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The window indices and masks of every batch of one pass: ``index, mask: [nb, B]``.

  The last, short batch is filled by cycling through its own real windows and masked, so each
  window is counted once. ``iterate_batches`` cuts its batches from these, and the steps that
  gather their windows on the device take them directly: both see the same windows in the same
  order.
  """
  total = num_batches(split, batch_size)
  order = epoch_order(split, shuffle=shuffle, seed=seed, epoch=epoch)
  index = np.empty((total, batch_size), np.int64)
  mask = np.zeros((total, batch_size), np.float32)
  for b in range(total):
    real = order[b * batch_size:(b + 1) * batch_size]
    index[b] = np.resize(real, batch_size)
    mask[b, :len(real)] = 1.0
  return index, mask


def _batches(split, index, mask, start_batch):
  for b in range(start_batch, len(index)):
    batch = split.get_batch(index[b])
    batch["mask"] = mask[b]  # [B]
    batch["index"] = index[b]  # [B]
    yield batch
