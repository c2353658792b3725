"""Losses of TimeDistill (docs/method.md, "Loss"), as pure functions.

Everything is computed in at least float32: ``jnp.fft.rfft`` rejects bfloat16, and a bfloat16
softmax/KL is biased by several percent. Every function takes an optional per-sample ``mask: [B]``
(1 real, 0 padding; any non-negative weights work) so that a padded last batch gives exactly the
loss of the smaller batch it stands for. Padded samples must hold finite values (zeros or copies):
they are multiplied by 0, not selected out.

The TimeDistill loss follows the reference code, not only the paper's prose:

* multi-scale: parameter-free average pooling (kernel = stride = 2, tail dropped) 3 times, the
  element-mean squared error at each of the 4 scales, averaged over the scales;
* multi-period: unnormalised rFFT amplitudes without the DC bin, softmax with temperature 0.5,
  then torch's ``F.kl_div(log(q_s + 1e-8), q_t, reduction='mean')``, i.e. KL(teacher || student)
  averaged over every entry, not summed over frequencies;
* prediction terms run along the horizon of ``[B, H, C]``; feature terms along the hidden axis D
  of ``[B, C, D]`` (the reference pools and transforms the feature width, not time).
"""

import jax
import jax.numpy as jnp

from timedistill_jax.errors import ConfigError

# Inside the student's log only, as the reference; keeps log finite when q_s underflows to 0.
_LOG_EPS = 1e-8


def _as_float(x):
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_same_shape(what, a, b):
  # Broadcasting two different shapes would silently compute the wrong loss. Not
  # chex.assert_equal_shape: it raises AssertionError, and chex stays a test-only dependency.
  if a.shape != b.shape:
    raise ValueError(f"{what}: shapes differ, {a.shape} vs {b.shape}.")


def _masked_mean(values, mask):
  """Mean of ``values: [B, ...]``; with ``mask: [B]``, over the weighted samples only."""
  if mask is None:
    return jnp.mean(values)
  mask = _as_float(mask)
  per_sample = values.size // values.shape[0]
  weighted = values * mask.reshape(mask.shape + (1,) * (values.ndim - 1))
  # A batch of padding only (possible on one device of a sharded last batch) contributes 0
  # instead of 0/0.
  count = jnp.maximum(jnp.sum(mask), jnp.finfo(values.dtype).tiny) * per_sample
  return jnp.sum(weighted) / count


def mse(pred, target, mask=None):
  """Mean squared error over all elements (``nn.MSELoss``); ``mask: [B]`` weights samples."""
  pred, target = _as_float(pred), _as_float(target)
  _check_same_shape("mse", pred, target)
  return _masked_mean(jnp.square(pred - target), mask)


def mae(pred, target, mask=None):
  """Mean absolute error over all elements; ``mask: [B]`` weights samples."""
  pred, target = _as_float(pred), _as_float(target)
  _check_same_shape("mae", pred, target)
  return _masked_mean(jnp.abs(pred - target), mask)


def avg_pool(x, *, axis: int, window: int = 2):
  """Average pooling along ``axis`` with kernel = stride = ``window``; an incomplete tail is
  dropped, as ``AvgPool1d`` does.

  Written as a sum of ``window`` strided slices, which XLA fuses with its neighbours; a
  reshape-and-mean becomes a separate reduction that XLA:CPU runs several times slower.
  """
  axis = axis % x.ndim
  n = x.shape[axis] // window
  total = sum(jax.lax.slice_in_dim(x, i, i + (n - 1) * window + 1, stride=window, axis=axis)
              for i in range(window))
  return total / window


def _max_scales(length: int, window: int) -> int:
  """The most poolings by ``window`` that leave ``length`` at least 1."""
  scales = 0
  while length // window**(scales + 1) >= 1:
    scales += 1
  return scales


def multi_scale_mse(student, teacher, *, axis: int, num_scales: int = 3, window: int = 2,
                    mask=None):
  """Mean over the ``num_scales + 1`` scales (original included) of the element-mean squared
  error, each scale average-pooled from the previous one along ``axis``."""
  student, teacher = _as_float(student), _as_float(teacher)
  _check_same_shape("multi_scale_mse", student, teacher)
  length = student.shape[axis]
  if length // window**num_scales < 1:
    raise ConfigError(
        f"multi-scale loss: a length of {length} along axis {axis} cannot be pooled "
        f"{num_scales} times by {window}; lower num_scales to at most "
        f"{_max_scales(length, window)}.")
  # Pooling is linear, so the pooled difference is the difference of the pooled inputs (to
  # float rounding): one tensor is pooled instead of two, in the forward and backward passes.
  diff = student - teacher
  total = _masked_mean(jnp.square(diff), mask)
  for _ in range(num_scales):
    diff = avg_pool(diff, axis=axis, window=window)
    total = total + _masked_mean(jnp.square(diff), mask)
  return total / (num_scales + 1)


def period_probs(x, *, axis: int, temperature: float = 0.5):
  """Softmax over frequencies of the rFFT amplitudes of ``x`` along ``axis``, DC bin dropped.

  The length along ``axis`` becomes ``n // 2`` (the Nyquist bin is kept for even ``n``). The FFT
  is unnormalised, as torch's default, so amplitudes scale with the length and the data.
  """
  amp = jnp.abs(jnp.fft.rfft(_as_float(x), axis=axis))
  amp = jax.lax.slice_in_dim(amp, 1, amp.shape[axis], axis=axis % amp.ndim)
  return jax.nn.softmax(amp / temperature, axis=axis)


def multi_period_kl(student, teacher, *, axis: int, temperature: float = 0.5, mask=None):
  """KL(teacher || student) of the :func:`period_probs` spectra, averaged over every entry.

  Equal to torch's ``F.kl_div(log(q_s + 1e-8), q_t, reduction='mean')``. Gradients flow to both
  inputs: on the feature side the teacher is the (trainable) regressor's output.
  """
  _check_same_shape("multi_period_kl", jnp.asarray(student), jnp.asarray(teacher))
  q_s = period_probs(student, axis=axis, temperature=temperature)
  q_t = period_probs(teacher, axis=axis, temperature=temperature)
  log_qs = jnp.log(q_s + _LOG_EPS)
  # A teacher probability that underflows to exactly 0 contributes 0 (torch's xlogy convention).
  # Both wheres are needed: with only the outer one, the gradient of log(0) is inf, and
  # 0 * inf = NaN poisons the teacher's gradient.
  positive = q_t > 0
  safe_qt = jnp.where(positive, q_t, 1.0)
  terms = jnp.where(positive, q_t * (jnp.log(safe_qt) - log_qs), 0.0)
  return _masked_mean(terms, mask)


def timedistill_loss(pred_s, pred_t, hidden_s, hidden_t, y, *, alpha: float, beta: float,
                     temperature: float = 0.5, num_scales: int = 3, mask=None,
                     sup_weight: float = 1.0, scale_weight: float = 1.0,
                     period_weight: float = 1.0):
  """The TimeDistill objective (paper Eq. 12 = reference code).

  Args:
    pred_s, pred_t: student and teacher predictions, ``[B, H, C]``, both de-normalised.
    hidden_s: student features ``[B, C, D]``.
    hidden_t: teacher features already mapped by the regressor, ``[B, C, D]``.
    y: ground truth ``[B, H, C]``.
    alpha, beta: weights of the prediction-level and feature-level terms.
    temperature: softmax temperature of the period terms (hard-coded 0.5 in the reference).
    num_scales: number of pooled scales besides the original (3 in the reference).
    mask: optional ``[B]`` sample weights, 0 for padding.
    sup_weight, scale_weight, period_weight: 1 in the method; the paper's ablation (Table 4)
      sets one to 0 to drop L_sup, both L_scale or both L_period terms.

  Returns:
    ``(total, parts)``: ``total = sup + alpha * (pred_scale + pred_period)
    + beta * (feat_scale + feat_period)`` (each part times its weight); ``parts`` holds those
    five float32 scalars, unweighted.
  """
  parts = {
      "sup": mse(pred_s, y, mask),
      # Prediction terms along the horizon H (axis 1 of [B, H, C]).
      "pred_scale": multi_scale_mse(pred_s, pred_t, axis=1, num_scales=num_scales, mask=mask),
      "pred_period": multi_period_kl(pred_s, pred_t, axis=1, temperature=temperature,
                                     mask=mask),
      # Feature terms along the hidden axis D (axis 2 of [B, C, D]), as the reference does.
      "feat_scale": multi_scale_mse(hidden_s, hidden_t, axis=2, num_scales=num_scales,
                                    mask=mask),
      "feat_period": multi_period_kl(hidden_s, hidden_t, axis=2, temperature=temperature,
                                     mask=mask),
  }
  weights = {"sup": sup_weight, "pred_scale": alpha * scale_weight,
             "pred_period": alpha * period_weight, "feat_scale": beta * scale_weight,
             "feat_period": beta * period_weight}
  # A zero weight drops its term from the sum (not 0 * term: a non-finite term stays out). A
  # traced weight (an ensemble member's own) is dropped by a select instead, to the same value.
  terms = [w * parts[k] if isinstance(w, (int, float)) else jnp.where(w != 0, w * parts[k], 0.0)
           for k, w in weights.items() if not isinstance(w, (int, float)) or w != 0]
  return sum(terms), parts
