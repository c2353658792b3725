"""The data of a run on the device: every split's rows once, windows gathered inside the step.

The host pipeline (``windows.iterate_batches``) cuts each batch with numpy and sends it to the
device, one step at a time. On a GPU a student step takes well under a millisecond, so that
leaves the device mostly idle. Instead, the rows of the three splits are placed on the device
once, end to end (``rows [R, C]``, ``marks [R, F]``), and a step receives only the first row of
each window and the mask; ``DeviceData.gather`` cuts the windows inside the jitted program. The
windows, their order and the padded, masked last batch are the host pipeline's
(``windows.batch_indices``), so the numbers are the same.

A distillation run adds the frozen teachers' outputs on the training windows
(``teacher_pred``, ``teacher_hidden``), gathered by the same indices.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from timedistill_jax.data.windows import WindowSplit, batch_indices

SPLITS = ("train", "val", "test")


class DeviceData(struct.PyTreeNode):
  """The rows of every split end to end, and optionally cached teacher outputs.

  Window ``i`` of split ``s`` starts at row ``offsets[s] + i``; the training split comes first,
  so a training window's start row is also its index in the teacher cache.
  """

  rows: jax.Array  # [R, C] float32, scaled
  marks: jax.Array  # [R, F] float32
  teacher_pred: tuple = ()  # one [N_train, H, C] per teacher
  teacher_hidden: tuple = ()  # one [N_train, C_t, D_t] per teacher
  seq_len: int = struct.field(pytree_node=False, default=0)
  label_len: int = struct.field(pytree_node=False, default=0)
  pred_len: int = struct.field(pytree_node=False, default=0)

  def gather(self, start, mask) -> dict:
    """The batch of windows starting at rows ``start [B]``: the arrays a step takes."""
    x_rows = start[:, None] + jnp.arange(self.seq_len)  # [B, L]
    y_rows = start[:, None] + jnp.arange(self.seq_len - self.label_len,
                                         self.seq_len + self.pred_len)  # [B, S + H]
    batch = {"x": self.rows[x_rows], "y": self.rows[y_rows], "x_mark": self.marks[x_rows],
             "y_mark": self.marks[y_rows], "mask": mask}
    if self.teacher_pred:
      batch["teacher_pred"] = tuple(p[start] for p in self.teacher_pred)
      batch["teacher_hidden"] = tuple(h[start] for h in self.teacher_hidden)
    return batch

  def with_teacher_outputs(self, preds, hiddens) -> "DeviceData":
    return self.replace(teacher_pred=tuple(preds), teacher_hidden=tuple(hiddens))


def split_offsets(splits) -> dict:
  """The first row of each split in ``DeviceData.rows``."""
  offsets, row = {}, 0
  for name in SPLITS:
    offsets[name] = row
    row += len(getattr(splits, name).data)
  return offsets


def device_data(splits) -> DeviceData:
  """The three splits' rows end to end, as host arrays (``DataParallel.replicate`` places them).
  ``splits`` may also be one ``WindowSplit`` alone (its windows start at row 0)."""
  parts = [splits] if isinstance(splits, WindowSplit) else [getattr(splits, n) for n in SPLITS]
  return DeviceData(rows=np.concatenate([p.data for p in parts]).astype(np.float32),
                    marks=np.concatenate([p.marks for p in parts]).astype(np.float32),
                    seq_len=parts[0].seq_len, label_len=parts[0].label_len,
                    pred_len=parts[0].pred_len)


def window_starts(split: WindowSplit, offset: int, batch_size: int, **order) -> tuple:
  """``batch_indices`` of one pass as rows of ``DeviceData``: ``(start, mask)``, each
  ``[nb, B]`` (int32 and float32)."""
  index, mask = batch_indices(split, batch_size, **order)
  return (index + offset).astype(np.int32), mask


def pad_batches(start, mask, num: int) -> tuple:
  """``start, mask`` with masked copies of their first batch appended up to ``num`` batches:
  every call of a compiled loop takes one shape; the loop runs only the real batches."""
  extra = num - len(start)
  if extra <= 0:
    return start, mask
  return (np.concatenate([start, np.repeat(start[:1], extra, 0)]),
          np.concatenate([mask, np.zeros((extra,) + mask.shape[1:], mask.dtype)]))
