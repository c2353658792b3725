"""Losses against independent float64 NumPy versions written from docs/method.md, "Loss"."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from timedistill_jax import losses
from timedistill_jax.errors import ConfigError

RTOL = 1e-6


# ---- NumPy reference, following docs/method.md "Loss" literally ([B, C, L] pooling, [B, F, C] FFT)

def np_pool_scales(x_bcl, n=3, window=2):
  out = [x_bcl]
  for _ in range(n):
    length = out[-1].shape[-1] // window
    out.append(out[-1][..., :window * length]
               .reshape(*out[-1].shape[:-1], length, window).mean(-1))
  return out


def np_scale_loss(a_bcl, b_bcl, n=3, window=2):
  pairs = zip(np_pool_scales(a_bcl, n, window), np_pool_scales(b_bcl, n, window))
  return np.mean([np.mean((u - v)**2) for u, v in pairs])


def np_period_q(x_bfc, tau=0.5):
  amp = np.abs(np.fft.rfft(x_bfc, axis=1))[:, 1:, :]
  e = np.exp((amp - amp.max(axis=1, keepdims=True)) / tau)
  return e / e.sum(axis=1, keepdims=True)


def np_kl_mean(q_t, q_s):
  with np.errstate(divide="ignore", invalid="ignore"):
    xlogx = np.where(q_t > 0, q_t * np.log(q_t), 0.0)
  return np.mean(xlogx - q_t * np.log(q_s + 1e-8))


def np_timedistill(y_s, y_t, h_s, h_t, y, alpha, beta, tau=0.5, n=3):
  t = lambda a: a.transpose(0, 2, 1)
  sup = np.mean((y_s - y)**2)
  pred_period = np_kl_mean(np_period_q(y_t, tau), np_period_q(y_s, tau))
  pred_scale = np_scale_loss(t(y_s), t(y_t), n)
  feat_period = np_kl_mean(np_period_q(t(h_t), tau), np_period_q(t(h_s), tau))
  feat_scale = np_scale_loss(h_s, h_t, n)
  total = sup + alpha * (pred_scale + pred_period) + beta * (feat_scale + feat_period)
  return total, dict(sup=sup, pred_scale=pred_scale, pred_period=pred_period,
                     feat_scale=feat_scale, feat_period=feat_period)


def randn(seed, *shape, scale=1.0):
  # float32 values, so that JAX and NumPy (in float64) see exactly the same inputs.
  return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def f64(x):
  return np.asarray(x, np.float64)


# ---- Hand-computed values ----

def test_multi_scale_mse_hand_computed():
  # Scales of [1, 2, 3, 4] against 0: [1,2,3,4] -> mean sq 7.5; [1.5, 3.5] -> 7.25; [2.5] -> 6.25.
  # Mean over the 3 scales: 21 / 3 = 7.
  s = jnp.array([[1.0, 2.0, 3.0, 4.0]])
  value = losses.multi_scale_mse(s, jnp.zeros_like(s), axis=1, num_scales=2)
  np.testing.assert_allclose(value, 7.0, rtol=RTOL)


def test_multi_period_kl_hand_computed():
  # Teacher [0, 1, 0, -1]: rfft = [0, -2j, 0] -> amplitudes without DC [2, 0]; softmax([4, 0])
  # = [e^4, 1] / (e^4 + 1). Student 0: amplitudes [0, 0] -> q_s = [1/2, 1/2].
  teacher = jnp.array([[0.0], [1.0], [0.0], [-1.0]])[None]  # [1, 4, 1]
  q = np.array([np.e**4, 1.0]) / (np.e**4 + 1.0)
  expected = np.mean(q * (np.log(q) - np.log(0.5 + 1e-8)))
  value = losses.multi_period_kl(jnp.zeros_like(teacher), teacher, axis=1)
  np.testing.assert_allclose(value, expected, rtol=RTOL)
  np.testing.assert_allclose(expected, 0.3015262, rtol=1e-6)


def test_mse_mae_hand_computed():
  pred, target = jnp.array([[1.0, -2.0], [0.0, 4.0]]), jnp.zeros((2, 2))
  np.testing.assert_allclose(losses.mse(pred, target), 21.0 / 4)
  np.testing.assert_allclose(losses.mae(pred, target), 7.0 / 4)
  # Sample 1 is padding: only [1, -2] counts.
  mask = jnp.array([1.0, 0.0])
  np.testing.assert_allclose(losses.mse(pred, target, mask), 5.0 / 2)
  np.testing.assert_allclose(losses.mae(pred, target, mask), 3.0 / 2)


# ---- Against the NumPy reference ----

@pytest.mark.parametrize("shape", [(4, 96, 7), (3, 97, 5), (2, 30, 3)])
def test_mse_mae_match_numpy(shape):
  a, b = randn(0, *shape), randn(1, *shape)
  np.testing.assert_allclose(losses.mse(a, b), np.mean((f64(a) - f64(b))**2), rtol=RTOL)
  np.testing.assert_allclose(losses.mae(a, b), np.mean(np.abs(f64(a) - f64(b))), rtol=RTOL)


@pytest.mark.parametrize("length,num_scales,window", [
    (96, 3, 2), (97, 3, 2), (30, 3, 2), (30, 1, 2), (97, 4, 2), (97, 2, 3), (30, 3, 3)])
def test_multi_scale_mse_matches_numpy(length, num_scales, window):
  s, t = randn(2, 3, 4, length), randn(3, 3, 4, length)  # [B, C, L]: pooled along the last axis
  expected = np_scale_loss(f64(s), f64(t), num_scales, window)
  got = losses.multi_scale_mse(s, t, axis=2, num_scales=num_scales, window=window)
  np.testing.assert_allclose(got, expected, rtol=RTOL)
  # The same along another axis: [B, L, C] pooled along axis 1.
  got_t = losses.multi_scale_mse(s.transpose(0, 2, 1), t.transpose(0, 2, 1), axis=1,
                                 num_scales=num_scales, window=window)
  np.testing.assert_allclose(got_t, expected, rtol=RTOL)


@pytest.mark.parametrize("length,temperature", [(96, 0.5), (97, 0.5), (30, 0.5), (30, 2.0)])
def test_multi_period_kl_matches_numpy(length, temperature):
  s, t = randn(4, 3, length, 5, scale=0.3), randn(5, 3, length, 5, scale=0.3)  # [B, F, C]
  expected = np_kl_mean(np_period_q(f64(t), temperature), np_period_q(f64(s), temperature))
  got = losses.multi_period_kl(s, t, axis=1, temperature=temperature)
  np.testing.assert_allclose(got, expected, rtol=RTOL)
  got_last = losses.multi_period_kl(s.transpose(0, 2, 1), t.transpose(0, 2, 1), axis=-1,
                                    temperature=temperature)
  np.testing.assert_allclose(got_last, expected, rtol=RTOL)


def test_period_probs_shape_and_normalisation():
  q = losses.period_probs(randn(6, 2, 97, 3), axis=1)
  assert q.shape == (2, 48, 3)  # 97 // 2 bins without DC
  np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)
  assert losses.period_probs(randn(6, 2, 96, 3), axis=1).shape == (2, 48, 3)  # Nyquist kept


def _loss_inputs(b=4, h=96, c=7, d=30, seed=10):
  return dict(pred_s=randn(seed, b, h, c), pred_t=randn(seed + 1, b, h, c),
              hidden_s=randn(seed + 2, b, c, d, scale=0.2),
              hidden_t=randn(seed + 3, b, c, d, scale=0.2), y=randn(seed + 4, b, h, c))


@pytest.mark.parametrize("h,d,num_scales", [(96, 512, 3), (97, 30, 3), (97, 30, 2)])
def test_timedistill_loss_matches_numpy(h, d, num_scales):
  inputs = _loss_inputs(h=h, d=d)
  alpha, beta = 0.7, 2.5
  total, parts = losses.timedistill_loss(**inputs, alpha=alpha, beta=beta,
                                         num_scales=num_scales)
  expected_total, expected = np_timedistill(
      *(f64(inputs[k]) for k in ("pred_s", "pred_t", "hidden_s", "hidden_t", "y")),
      alpha, beta, n=num_scales)
  assert set(parts) == set(expected)
  for name, value in expected.items():
    np.testing.assert_allclose(parts[name], value, rtol=RTOL, err_msg=name)
  np.testing.assert_allclose(total, expected_total, rtol=RTOL)


@pytest.mark.parametrize("drop", ["sup", "scale", "period"])
def test_ablation_weights_drop_their_terms(drop):
  inputs = _loss_inputs(h=48, d=30)
  alpha, beta = 0.7, 2.5
  _, parts = losses.timedistill_loss(**inputs, alpha=alpha, beta=beta)
  total, _ = losses.timedistill_loss(**inputs, alpha=alpha, beta=beta, **{drop + "_weight": 0.0})
  keep = {"sup": 0.0 if drop == "sup" else 1.0, "scale": 0.0 if drop == "scale" else 1.0,
          "period": 0.0 if drop == "period" else 1.0}
  expected = (keep["sup"] * parts["sup"]
              + alpha * (keep["scale"] * parts["pred_scale"] + keep["period"] * parts["pred_period"])
              + beta * (keep["scale"] * parts["feat_scale"] + keep["period"] * parts["feat_period"]))
  np.testing.assert_allclose(total, expected, rtol=RTOL)


# ---- Masks ----

def test_masked_losses_equal_unpadded_sub_batch():
  inputs = _loss_inputs(b=5, h=97, d=30)
  mask = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0])
  real = {k: v[:3] for k, v in inputs.items()}
  a, b, ar, br = inputs["pred_s"], inputs["pred_t"], real["pred_s"], real["pred_t"]
  pairs = [
      (losses.mse(a, b, mask), losses.mse(ar, br)),
      (losses.mae(a, b, mask), losses.mae(ar, br)),
      (losses.multi_scale_mse(a, b, axis=1, mask=mask), losses.multi_scale_mse(ar, br, axis=1)),
      (losses.multi_period_kl(a, b, axis=1, mask=mask), losses.multi_period_kl(ar, br, axis=1)),
  ]
  for masked, unpadded in pairs:
    np.testing.assert_allclose(masked, unpadded, rtol=RTOL)
  total_m, parts_m = losses.timedistill_loss(**inputs, alpha=1.0, beta=0.5, mask=mask)
  total_r, parts_r = losses.timedistill_loss(**real, alpha=1.0, beta=0.5)
  np.testing.assert_allclose(total_m, total_r, rtol=RTOL)
  for name in parts_r:
    np.testing.assert_allclose(parts_m[name], parts_r[name], rtol=RTOL, err_msg=name)


def test_all_padding_mask_gives_zero():
  inputs = _loss_inputs(b=2)
  total, _ = losses.timedistill_loss(**inputs, alpha=1.0, beta=1.0, mask=jnp.zeros(2))
  assert float(total) == 0.0


# ---- Dtypes, gradients, errors ----

def test_bfloat16_inputs_give_float32():
  inputs = {k: jnp.asarray(v, jnp.bfloat16) for k, v in _loss_inputs(h=97, d=30).items()}
  a, b = inputs["pred_s"], inputs["pred_t"]
  assert losses.mse(a, b).dtype == jnp.float32
  assert losses.mae(a, b).dtype == jnp.float32
  assert losses.multi_scale_mse(a, b, axis=1).dtype == jnp.float32
  assert losses.multi_period_kl(a, b, axis=1).dtype == jnp.float32
  total, parts = losses.timedistill_loss(**inputs, alpha=1.0, beta=1.0,
                                         mask=jnp.ones(4, jnp.bfloat16))
  assert total.dtype == jnp.float32
  assert all(v.dtype == jnp.float32 for v in parts.values())
  # And the value is that of the bfloat16 values seen in float32.
  ref = {k: np.asarray(v.astype(jnp.float32), np.float64) for k, v in inputs.items()}
  expected, _ = np_timedistill(ref["pred_s"], ref["pred_t"], ref["hidden_s"], ref["hidden_t"],
                               ref["y"], 1.0, 1.0)
  np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_teacher_probability_underflow_keeps_value_and_gradients_finite():
  h = 96
  t = np.arange(h, dtype=np.float32)
  # A pure tone of amplitude 100: its bin has |X| = 100 * H / 2 = 4800, every other bin ~0, so
  # with temperature 0.05 the other teacher probabilities are exp(-96000) = exactly 0.
  tone = (100.0 * np.sin(2 * np.pi * 5 * t / h)).astype(np.float32)
  teacher = jnp.asarray(np.broadcast_to(tone[None, :, None], (2, h, 3)))
  # A small student keeps its own spectrum soft, so that it gets a nonzero gradient.
  student = jnp.asarray(randn(20, 2, h, 3, scale=0.01))
  temperature = 0.05
  q_t = losses.period_probs(teacher, axis=1, temperature=temperature)
  assert np.any(np.asarray(q_t) == 0.0), "the test needs teacher probabilities that are 0"

  kl = lambda s, t: losses.multi_period_kl(s, t, axis=1, temperature=temperature)
  value = kl(student, teacher)
  assert np.isfinite(value)
  g_s, g_t = jax.jit(jax.grad(kl, argnums=(0, 1)))(student, teacher)
  assert np.all(np.isfinite(g_s)) and np.all(np.isfinite(g_t))
  assert np.any(g_s != 0)

  # Guard the guard: with only the outer where, the teacher's gradient is NaN here.
  def naive(s, t):
    q_s = losses.period_probs(s, axis=1, temperature=temperature)
    q = losses.period_probs(t, axis=1, temperature=temperature)
    return jnp.mean(jnp.where(q > 0, q * (jnp.log(q) - jnp.log(q_s + 1e-8)), 0.0))
  assert not np.all(np.isfinite(jax.jit(jax.grad(naive, argnums=1))(student, teacher)))

  # Through the whole loss too, features included.
  inputs = _loss_inputs(b=2, h=h, c=3, d=32)
  inputs["pred_t"] = teacher
  inputs["hidden_t"] = jnp.asarray(np.broadcast_to(
      (100.0 * np.sin(2 * np.pi * 3 * np.arange(32) / 32)).astype(np.float32), (2, 3, 32)))
  loss = lambda ps, pt, hs, ht: losses.timedistill_loss(
      ps, pt, hs, ht, inputs["y"], alpha=1.0, beta=1.0, temperature=temperature)[0]
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(
      inputs["pred_s"], inputs["pred_t"], inputs["hidden_s"], inputs["hidden_t"])
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_gradients_reach_both_sides():
  inputs = _loss_inputs(b=2, h=16, c=3, d=16)
  loss = lambda ps, pt, hs, ht: losses.timedistill_loss(
      ps, pt, hs, ht, inputs["y"], alpha=1.0, beta=1.0)[0]
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(
      inputs["pred_s"], inputs["pred_t"], inputs["hidden_s"], inputs["hidden_t"])
  assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in grads)


def test_zero_inputs_have_finite_gradients():
  # Padded samples are often all zeros: |rfft| is then 0, where |z| has no derivative.
  z = jnp.zeros((2, 16, 3))
  kl_grad = jax.grad(lambda s, t: losses.multi_period_kl(s, t, axis=1), argnums=(0, 1))
  g_s, g_t = jax.jit(kl_grad)(z, z)
  assert np.all(np.isfinite(g_s)) and np.all(np.isfinite(g_t))


def test_shape_mismatch_and_too_short_raise():
  with pytest.raises(ValueError, match="shapes differ"):
    losses.mse(jnp.zeros((2, 8, 3)), jnp.zeros((2, 8, 1)))
  with pytest.raises(ValueError, match="shapes differ"):
    losses.multi_period_kl(jnp.zeros((2, 8, 3)), jnp.zeros((2, 8, 1)), axis=1)
  with pytest.raises(ConfigError, match="num_scales to at most 2"):
    losses.multi_scale_mse(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), axis=1, num_scales=3)
