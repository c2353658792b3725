"""FEDformer's frequency-enhanced blocks (``layers/FourierCorrelation.py``), Fourier version.

* :func:`frequency_modes` picks which rFFT modes a block keeps: the lowest ``modes`` or, with
  ``"random"``, ``modes`` of the first ``seq_len // 2`` drawn without replacement, sorted. The
  reference draws them with the global ``np.random`` state when the model is built; here the
  draw uses ``np.random.RandomState(seed)`` and the result is a static tuple the model holds as
  a field, so a run is reproducible and ``convert.fedformer_mode_indices`` can pass the
  reference's own indices.
  Called in the reference's order (encoder, decoder self, cross q, cross kv) on one
  ``RandomState``, the draw equals the reference's after ``np.random.seed(seed)``.
* :class:`FourierBlock` (self-attention substitute): rFFT over time of the queries, a learned
  complex ``[E, E]`` mix per head for each kept mode, inverse rFFT. As in the reference, the
  i-th kept mode is written to output frequency i (not to its own frequency), modes beyond the
  input's spectrum are skipped, and the weights always have 8 heads (the reference hard-codes
  8, so ``n_heads`` must be 8).
* :class:`FourierCrossAttention`: kept modes of q and k, ``tanh`` of the complex q-k products
  (real and imaginary parts separately), applied to k's modes, a learned complex mix per head,
  written back to the q modes' own frequencies, divided by ``d_model**2``, inverse rFFT.

Both blocks hand back their ``[B, h, E, L]`` result reshaped, not transposed, to
``[B, L, h, E]``: the reference's ``AutoCorrelationLayer`` does ``.view(B, L, -1)`` on it, which
mixes time and channels; trained weights depend on that, so it is kept.

Complex weights are two real arrays (``weights1`` real part, ``weights2`` imaginary part),
initialised U(0, 1) / d_model**2 as the reference.
"""

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.errors import ConfigError

MODE_SELECT = ("random", "low")
FOURIER_HEADS = 8


def frequency_modes(seq_len: int, modes: int, method: str, rng: np.random.RandomState) -> tuple:
  """Sorted indices of the rFFT modes a block keeps, as ``get_frequency_modes``."""
  if method not in MODE_SELECT:
    raise ConfigError(f"unknown mode_select {method!r}; valid choices: {', '.join(MODE_SELECT)}")
  modes = min(modes, seq_len // 2)
  if method == "random":
    index = list(range(seq_len // 2))
    rng.shuffle(index)
    index = index[:modes]
  else:
    index = list(range(modes))
  return tuple(sorted(int(i) for i in index))


def _scaled_uniform(scale: float):
  def init(key, shape, dtype=jnp.float32):
    return scale * jax.random.uniform(key, shape, dtype)
  return init


def _complex_weights(module, heads: int, d_model: int, num_modes: int):
  """``weights1 + i weights2``, each ``[heads, E, E, modes]``."""
  shape = (heads, d_model // heads, d_model // heads, num_modes)
  init = _scaled_uniform(1.0 / (d_model * d_model))
  return jax.lax.complex(module.param("weights1", init, shape),
                         module.param("weights2", init, shape))


def _pick(index: tuple, num_freq: int) -> np.ndarray:
  """``[F, m]`` 0/1 matrix: column ``i`` picks frequency ``index[i]``, all zero when it is
  ``>= num_freq`` (the reference then keeps a zero).

  Selecting and placing modes by contraction with a constant matrix instead of slicing,
  stacking and scattering: the gradient of 32 stacked slices is 32 full-size pads and adds,
  which made the backward pass of a Fourier block 12x its forward on the CPU.
  """
  pick = np.zeros((num_freq, len(index)), np.float32)
  for col, i in enumerate(index):
    if i < num_freq:
      pick[i, col] = 1.0
  return pick


def _contract_modes(x_ft, matrix: np.ndarray):
  """``x_ft[..., f] @ matrix[f, g]`` for complex ``x_ft`` and a real constant ``matrix``."""
  m = jnp.asarray(matrix)
  return jax.lax.complex(x_ft.real @ m, x_ft.imag @ m)


def _as_reference_view(out):
  """``[B, h, E, L]`` -> ``[B, L, h, E]`` by a plain reshape, not a transpose.

  The reference returns ``[B, h, E, L]`` and its ``AutoCorrelationLayer`` calls
  ``.view(B, L, -1)`` on it, which reinterprets the memory rather than moving the time axis.
  Trained weights depend on that mixing, so it is kept.
  """
  batch, heads, width, length = out.shape
  return out.reshape(batch, length, heads, width)


class FourierBlock(nn.Module):
  """``[B, L, h, E]`` queries -> ``[B, L, h, E]``; keys and values are unused, as the reference."""

  d_model: int
  index: tuple

  @nn.compact
  def __call__(self, q, k=None, v=None, *, train: bool = False):
    del k, v, train
    _, length, heads, _ = q.shape
    if heads != FOURIER_HEADS:
      raise ConfigError(
          f"FEDformer's Fourier block has {FOURIER_HEADS} heads; got n_heads={heads}.")
    weights = _complex_weights(self, FOURIER_HEADS, self.d_model, len(self.index))
    x_ft = jnp.fft.rfft(jnp.transpose(q, (0, 2, 3, 1)).astype(jnp.float32), axis=-1)  # [B, h, E, F]
    num_freq = length // 2 + 1
    # Kept mode i (frequency index[i]) goes to output frequency i; skip what falls outside.
    # index is sorted, so the modes kept are a prefix.
    used = sum(1 for wi, i in enumerate(self.index) if i < num_freq and wi < num_freq)
    src = _contract_modes(x_ft, _pick(self.index[:used], num_freq))  # [B, h, E, used]
    mixed = jnp.einsum("bhim,hiom->bhom", src, weights[..., :used])  # [B, h, O, used]
    out_ft = jnp.pad(mixed, ((0, 0),) * 3 + ((0, num_freq - used),))  # [B, h, O, F]
    out = jnp.fft.irfft(out_ft, n=length, axis=-1)  # [B, h, E, L]
    return _as_reference_view(out).astype(q.dtype)


class FourierCrossAttention(nn.Module):
  """Queries ``[B, L, h, E]`` attend to keys ``[B, S, h, E]`` in frequency: ``[B, L, h, E]``."""

  d_model: int
  n_heads: int
  index_q: tuple
  index_kv: tuple

  @nn.compact
  def __call__(self, q, k, v=None, *, train: bool = False):
    del v, train
    length = q.shape[1]
    weights = _complex_weights(self, self.n_heads, self.d_model, len(self.index_q))
    xq_ft = jnp.fft.rfft(jnp.transpose(q, (0, 2, 3, 1)).astype(jnp.float32), axis=-1)
    xk_ft = jnp.fft.rfft(jnp.transpose(k, (0, 2, 3, 1)).astype(jnp.float32), axis=-1)
    xq = _contract_modes(xq_ft, _pick(self.index_q, xq_ft.shape[-1]))  # [B, h, E, mq]
    xk = _contract_modes(xk_ft, _pick(self.index_kv, xk_ft.shape[-1]))  # [B, h, E, mk]
    qk = jnp.einsum("bhex,bhey->bhxy", xq, xk)  # [B, h, mq, mk]
    qk = jax.lax.complex(jnp.tanh(qk.real), jnp.tanh(qk.imag))
    qkv = jnp.einsum("bhxy,bhey->bhex", qk, xk)  # [B, h, E, mq]
    mixed = jnp.einsum("bhex,heox->bhox", qkv, weights)  # [B, h, O, mq]
    # Kept q mode i goes back to its own frequency index_q[i] (when it exists).
    num_freq = length // 2 + 1
    place = _pick(self.index_q[:mixed.shape[-1]], num_freq).T  # [mq, F]
    out_ft = _contract_modes(mixed, place)  # [B, h, O, F]
    out = jnp.fft.irfft(out_ft / self.d_model / self.d_model, n=length, axis=-1)  # [B, h, E, L]
    return _as_reference_view(out).astype(q.dtype)
