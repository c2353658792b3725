"""Autoformer's auto-correlation with top-k time-delay aggregation (``layers/AutoCorrelation.py``).

For queries, keys and values ``[B, L, h, E]`` (keys/values cut or zero-padded to L):

1. period-based dependencies: ``corr = irfft(rfft(q) * conj(rfft(k)))`` over time, per head and
   channel, ``[B, h, E, L]``; averaged over heads and channels: ``mean_corr [B, L]``;
2. ``k = int(factor * ln L)`` delays with the largest ``mean_corr``:
   * training: one set of delays for the whole batch, the top-k of ``mean_corr`` averaged over the
     batch; each sample weighs them by a softmax of its own ``mean_corr`` at those delays;
   * inference: each sample takes its own top-k delays and softmax weights;
3. time-delay aggregation: ``out[t] = sum_i w_i * v[(t + delay_i) mod L]``.

The delays are data-dependent integers, but k is static and every delay is a roll of a
fixed-length series, so one gather with ``(t + delay) mod L`` keeps all shapes static under jit.
The reference builds the inference gather index with ``.cuda()``; this version runs anywhere.
Gradients flow through the weights (the softmax of correlations) and the values, not through
the choice of delays, as in the reference. The reference creates an attention dropout that it
never applies; so does this layer (it has none).
"""

import math

import jax
import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.models.layers.linear import Linear


def _fit_length(t, length: int):
  """Cut ``t: [B, S, h, E]`` to ``length`` steps or pad it with zeros at the end."""
  if t.shape[1] >= length:
    return t[:, :length]
  pad = jnp.zeros((t.shape[0], length - t.shape[1]) + t.shape[2:], t.dtype)
  return jnp.concatenate([t, pad], axis=1)


def delay_aggregate(values, delays, weights):
  """``sum_i weights[:, i] * roll(values, -delays[:, i])`` over time.

  ``values: [B, L, h, E]``, ``delays: [B, k]`` integers, ``weights: [B, k]`` -> ``[B, L, h, E]``.
  """
  length = values.shape[1]
  t = jnp.arange(length)
  index = (t[None, None, :] + delays[:, :, None]) % length  # [B, k, L]
  gathered = jax.vmap(lambda v, i: v[i])(values, index)  # [B, k, L, h, E]
  return jnp.einsum("bk,bklhe->blhe", weights.astype(values.dtype), gathered)


def auto_correlation(queries, keys, values, *, factor: float, train: bool):
  """Auto-correlation of ``[B, L, h, E]`` queries against ``[B, S, h, E]`` keys and values."""
  length = queries.shape[1]
  keys = _fit_length(keys, length)
  values = _fit_length(values, length)
  q_fft = jnp.fft.rfft(queries.astype(jnp.float32), axis=1)
  k_fft = jnp.fft.rfft(keys.astype(jnp.float32), axis=1)
  corr = jnp.fft.irfft(q_fft * jnp.conj(k_fft), n=length, axis=1)  # [B, L, h, E]
  mean_corr = jnp.mean(corr, axis=(2, 3))  # [B, L]

  top_k = int(factor * math.log(length))
  if train:
    _, delay = jax.lax.top_k(jnp.mean(mean_corr, axis=0), top_k)  # [k], shared by the batch
    weights = mean_corr[:, delay]  # [B, k]
    delays = jnp.broadcast_to(delay, weights.shape)
  else:
    weights, delays = jax.lax.top_k(mean_corr, top_k)  # [B, k] each
  weights = jax.nn.softmax(weights, axis=-1)
  return delay_aggregate(values, jax.lax.stop_gradient(delays), weights).astype(queries.dtype)


class AutoCorrelation(nn.Module):
  """The parameter-free mechanism as a module, so that layers can take any inner mechanism."""

  factor: float = 1.0

  def __call__(self, queries, keys, values, *, train: bool):
    return auto_correlation(queries, keys, values, factor=self.factor, train=train)


class AutoCorrelationLayer(nn.Module):
  """Projections around an inner mechanism, as the reference's ``AutoCorrelationLayer``.

  ``Linear(D -> h * E)`` for queries, keys and values (E = D // h), the ``inner`` mechanism on
  ``[B, L, h, E]``, and ``Linear(h * E -> D)``. ``inner`` may be a module shared between layers
  (FEDformer shares one Fourier block across its encoder layers).
  """

  d_model: int
  n_heads: int
  inner: nn.Module

  @nn.compact
  def __call__(self, queries, keys, values, *, train: bool):
    d_head = self.d_model // self.n_heads
    width = self.n_heads * d_head
    split = lambda t: t.reshape(t.shape[:2] + (self.n_heads, d_head))
    q = split(Linear(width, name="query")(queries))  # [B, L, h, E]
    k = split(Linear(width, name="key")(keys))  # [B, S, h, E]
    v = split(Linear(width, name="value")(values))  # [B, S, h, E]
    out = self.inner(q, k, v, train=train)  # [B, L, h, E]
    out = out.reshape(out.shape[:2] + (width,))
    return Linear(self.d_model, name="out")(out)  # [B, L, D]
