"""Full multi-head attention, as Time-Series-Library's ``AttentionLayer(FullAttention(...))``.

Query, key and value projections ``Linear(d_model -> n_heads * d_head)`` with bias, scaled
dot-product attention with scale ``1 / sqrt(d_head)``, dropout on the attention weights, and an
output projection ``Linear(n_heads * d_head -> d_model)``. As in the reference, ``d_head =
d_model // n_heads``; when ``n_heads`` does not divide ``d_model`` the projections are simply
narrower than ``d_model`` (the parameter count then matches PyTorch's).
"""

import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.errors import ConfigError
from timedistill_jax.models.layers.linear import Linear


class MultiHeadAttention(nn.Module):
  """``(queries [B, N, D], keys [B, S, D], values [B, S, D]) -> [B, N, D]``, no mask."""

  d_model: int
  n_heads: int
  attention_dropout: float = 0.1

  @nn.compact
  def __call__(self, queries, keys, values, *, train: bool):
    d_head = self.d_model // self.n_heads
    if d_head < 1:
      raise ConfigError(
          f"n_heads={self.n_heads} exceeds d_model={self.d_model}; use n_heads <= d_model.")
    # Heads go before the tokens once, so both products below are plain batched matrix products
    # over [B, h]. Contracting "bnhe,bshe" in place made XLA:CPU run them 2-3.5x slower (the
    # small heads of PatchTST on ECL, d_head = 8, and iTransformer on ETTh1; benchmark.py).
    split = lambda t: t.reshape(t.shape[:-1] + (self.n_heads, d_head)).swapaxes(-3, -2)
    q = split(Linear(self.n_heads * d_head, name="query")(queries))  # [B, h, N, E]
    k = split(Linear(self.n_heads * d_head, name="key")(keys))  # [B, h, S, E]
    v = split(Linear(self.n_heads * d_head, name="value")(values))  # [B, h, S, E]

    scores = jnp.einsum("bhne,bhse->bhns", q, k)  # [B, h, N, S]
    # Softmax in float32 so that a low-precision model does not lose the attention's tail.
    weights = nn.softmax(scores.astype(jnp.float32) / jnp.sqrt(d_head), axis=-1)
    weights = nn.Dropout(self.attention_dropout, deterministic=not train)(weights)
    out = jnp.einsum("bhns,bhse->bhne", weights.astype(v.dtype), v)  # [B, h, N, E]
    out = out.swapaxes(-3, -2).reshape(out.shape[:-3] + (out.shape[-2], self.n_heads * d_head))
    return Linear(self.d_model, name="out")(out)  # [B, N, D]
