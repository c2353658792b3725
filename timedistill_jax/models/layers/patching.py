"""Splitting a series into (overlapping) patches, as PatchTST and ModernTCN do.

Both references pad the end of the series by repeating its last value before cutting patches
(PatchTST: ``nn.ReplicationPad1d((0, stride))``; ModernTCN's stem: ``patch_size - patch_stride``
copies of the last step), then take windows of ``patch_len`` every ``stride`` steps
(``Tensor.unfold``). Here the windows are gathered with one static index array.
"""

import numpy as np
import jax.numpy as jnp


def num_patches(length: int, patch_len: int, stride: int, pad: int) -> int:
  """Patches cut from a series of ``length`` steps padded by ``pad`` at its end."""
  return (length + pad - patch_len) // stride + 1


def patch_series(x, patch_len: int, stride: int, pad: int):
  """``x: [..., L]`` -> ``[..., P, patch_len]``, end padded with ``pad`` copies of the last step."""
  if pad:
    x = jnp.concatenate([x, jnp.repeat(x[..., -1:], pad, axis=-1)], axis=-1)
  count = num_patches(x.shape[-1] - pad, patch_len, stride, pad)
  if count < 1:
    raise ValueError(
        f"a series of {x.shape[-1] - pad} steps is shorter than one patch of {patch_len}")
  index = np.arange(count)[:, None] * stride + np.arange(patch_len)[None, :]  # [P, patch_len]
  return x[..., index]
