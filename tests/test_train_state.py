"""The optimiser of timedistill_jax/train_state.py: every learning-rate schedule against rates
worked out by hand, and weight decay as PyTorch's Adam applies it (L2 added to the gradient)."""

import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from timedistill_jax.errors import ConfigError
from timedistill_jax.train_state import (SCHEDULES, create_train_state, learning_rate,
                                         make_optimizer, make_schedule)

LR, EPOCHS = 0.01, 7


def _optim(schedule, weight_decay=0.0, lr=LR):
  return ml_collections.ConfigDict(dict(lr=lr, schedule=schedule, weight_decay=weight_decay))


def _cosine(step, total):
  """optax.cosine_decay_schedule(LR, total): LR (1 + cos(pi min(t, T) / T)) / 2."""
  return LR * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


# The rate of every step of each 0-based epoch, written out by hand.
EXPECTED = {
    # The reference's adjust_learning_rate: after epoch e (1-based) lr * 0.5 ** (e - 1).
    "type1": lambda epoch, step, total: [0.01, 0.01, 0.005, 0.0025, 0.00125, 0.000625,
                                         0.0003125][epoch],
    # The first release's type4: after epoch e, lr for e < 3, else lr * 0.9 ** (e - 3).
    "type4": lambda epoch, step, total: [0.01, 0.01, 0.01, 0.01, 0.009, 0.0081,
                                         0.00729][epoch],
    "constant": lambda epoch, step, total: 0.01,
    "cosine": lambda epoch, step, total: _cosine(step, total),
}


def test_every_schedule_has_expected_rates():
  assert set(EXPECTED) == set(SCHEDULES), "add the hand-computed rates of a new schedule"


@pytest.mark.parametrize("steps_per_epoch", [3, 10])
@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_rates_per_epoch(name, steps_per_epoch):
  schedule = make_schedule(_optim(name), steps_per_epoch=steps_per_epoch, epochs=EPOCHS)
  total = steps_per_epoch * EPOCHS
  for epoch in range(EPOCHS):
    for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
      want = EXPECTED[name](epoch, step, total)
      # float32 rates: 1e-6 relative, or 1e-6 of LR where the cosine nears zero
      np.testing.assert_allclose(float(schedule(step)), want, rtol=1e-6, atol=1e-8,
                                 err_msg=f"{name}: epoch {epoch}, step {step}")
    # The rate the loop logs for an epoch is the one of its first step.
    np.testing.assert_allclose(
        learning_rate(_optim(name), steps_per_epoch, EPOCHS, epoch * steps_per_epoch),
        EXPECTED[name](epoch, epoch * steps_per_epoch, total), rtol=1e-6)


def test_unknown_schedule_names_the_valid_ones():
  with pytest.raises(ConfigError, match="unknown learning-rate schedule 'type9'; valid choices: "
                                        + ", ".join(sorted(SCHEDULES))):
    make_schedule(_optim("type9"), steps_per_epoch=3, epochs=2)


def _numpy_adam(params, grads, lrs, weight_decay, decoupled=False, b1=0.9, b2=0.999, eps=1e-8):
  """torch.optim.Adam (L2: ``grad + wd * param``), or AdamW's decoupled decay, in float64."""
  p = params.astype(np.float64)
  m = np.zeros_like(p)
  v = np.zeros_like(p)
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    g = g.astype(np.float64)
    if decoupled:
      p = p - lr * weight_decay * p
    else:
      g = g + weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
  return p


def test_weight_decay_is_l2_in_the_gradient_as_torch_adam():
  rng = np.random.default_rng(0)
  params = rng.uniform(-2, 2, size=(4, 5)).astype(np.float32)
  # Small gradients: 0.5 * param outweighs them, so L2 flips the sign of many updates.
  grads = [0.1 * rng.standard_normal((4, 5)).astype(np.float32) for _ in range(3)]
  wd = 0.5
  # type1 with one step an epoch: rates 0.01, 0.01, 0.005 over the three steps.
  tx = make_optimizer(_optim("type1", weight_decay=wd), steps_per_epoch=1, epochs=3)
  state = create_train_state({"w": jnp.asarray(params)}, {}, tx, rng=None)
  for g in grads:
    state = state.apply_gradients({"w": jnp.asarray(g)})
  got = np.asarray(state.params["w"])
  lrs = [0.01, 0.01, 0.005]
  np.testing.assert_allclose(got, _numpy_adam(params, grads, lrs, wd), rtol=1e-5, atol=1e-7)
  assert int(state.step) == 3
  # Neither plain Adam nor AdamW's decoupled decay gives this.
  for other in (_numpy_adam(params, grads, lrs, 0.0),
                _numpy_adam(params, grads, lrs, wd, decoupled=True)):
    assert np.abs(got - other).max() > 1e-3
