"""Dropout with half the random-number work of ``flax.linen.Dropout``, same keep probability.

``nn.Dropout`` draws one float per element with ``jax.random.bernoulli``; under JAX's default
partitionable Threefry every 32-bit draw costs a whole Threefry-2x32 block whose two output words
are XOR-ed into one. On a CPU that hashing is most of the cost of dropout (ModernTCN draws four
masks the size of its hidden state per step: ~1/3 of the old step). Here both words of each block
are kept, one 32-bit word per element, compared with ``keep * 2**32``: the mask is
Bernoulli(keep) to 2**-32 (``bernoulli`` is exact to 2**-23), the random stream differs. Keys
other than Threefry fall back to ``jax.random.bernoulli``.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry2x32_p


def _threefry_words(rng):
  """The key's two uint32 words, or None if it is not a Threefry key."""
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    if jax.random.key_impl(rng) != jax.random.key_impl(jax.random.key(0, impl="threefry2x32")):
      return None
    rng = jax.random.key_data(rng)
  return (rng[0], rng[1]) if rng.shape == (2,) and rng.dtype == jnp.uint32 else None


def dropout(x, rate: float, rng):
  """Zeroes each element of ``x`` with probability ``rate``, scales the rest by 1 / (1 - rate)."""
  keep = 1.0 - rate
  words = _threefry_words(rng)
  if words is None or x.size % 2:
    return jnp.where(jax.random.bernoulli(rng, keep, x.shape), x / keep, 0.0).astype(x.dtype)
  half = x.size // 2
  count = jax.lax.iota(np.uint32, half)
  # Counters 0..half-1 and half..size-1 in the block's two lanes: no counter repeats.
  bits = threefry2x32_p.bind(*words, count, count + np.uint32(half))
  threshold = np.uint32(min(round(keep * 2.0 ** 32), 2 ** 32 - 1))
  halves = x.reshape(2, half)  # one output word per half: no concatenation of the draws
  out = [jnp.where(b < threshold, h / keep, 0.0) for b, h in zip(bits, halves)]
  return jnp.stack(out).reshape(x.shape).astype(x.dtype)


class Dropout(nn.Module):
  """Drop-in for ``nn.Dropout(rate, deterministic)``: :func:`dropout` with the ``dropout`` rng."""

  rate: float
  deterministic: bool | None = None

  @nn.compact
  def __call__(self, x, deterministic: bool | None = None):
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if deterministic or self.rate == 0.0:
      return x
    if self.rate == 1.0:
      return jnp.zeros_like(x)
    return dropout(x, self.rate, self.make_rng("dropout"))
