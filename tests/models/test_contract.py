"""The model contract, checked for every registered model (teachers and students) on tiny shapes.

``pred, features = model.apply(variables, x, x_mark, y_mark, train=...)`` with ``pred [B, H, C]``
and ``features["hidden"] [B, C, model.feature_dim]``, finite, the same under ``jax.jit``, the
same on every call, dropout only in training, and a gradient for every parameter.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import B, C, H, build, inputs, random_variables
from timedistill_jax import models
from timedistill_jax.errors import ConfigError

NAMES = sorted(models.REGISTRY)

# Parameter path prefixes a model deliberately carries unused (checked to get no gradient):
# the student always builds the reference's RevIN affine, but uses it only when norm == "revin";
# FEDformer's Fourier blocks read only the queries (self) or queries and keys (cross), so those
# layers' key / value projections get no gradient, in the reference as here.
UNUSED_PARAMS = {
    "mlp": {("revin",)},
    "dmlp": {("revin",)},
    "fedformer": {("enc_0_attention", "key"), ("enc_0_attention", "value"),
                  ("dec_0_self_attention", "key"), ("dec_0_self_attention", "value"),
                  ("dec_0_cross_attention", "value")},
}


def _apply_train(model, variables, args, key):
  """Train-mode forward; returns ``(pred, features)`` (batch statistics dropped)."""
  mutable = ["batch_stats"] if "batch_stats" in variables else False
  out = model.apply(variables, *args, train=True, rngs={"dropout": key}, mutable=mutable)
  return out[0] if mutable else out


def _contract_outputs(model, variables, args):
  """Everything the contract tests need, in one jitted function (one compilation per model)."""
  k1, k2 = jax.random.split(jax.random.key(6))
  w_pred = jax.random.normal(k1, (B, H, C))
  w_hidden = jax.random.normal(k2, (B, C, model.feature_dim))

  def loss(params):
    pred, feats = _apply_train(model, {**variables, "params": params}, args, jax.random.key(7))
    return jnp.sum(pred * w_pred) + jnp.sum(feats["hidden"] * w_hidden), (pred, feats)

  # The loss's forward pass is the training-mode output with dropout key 7.
  grads, train_out = jax.grad(loss, has_aux=True)(variables["params"])
  return dict(
      eval=model.apply(variables, *args, train=False),
      eval_rng4=model.apply(variables, *args, train=False, rngs={"dropout": jax.random.key(4)}),
      eval_rng5=model.apply(variables, *args, train=False, rngs={"dropout": jax.random.key(5)}),
      train=train_out,
      train_other_key=_apply_train(model, variables, args, jax.random.key(8)),
      grads=grads)


@pytest.fixture(scope="module", params=NAMES)
def contract(request):
  """``(name, model, args, variables, outputs, outputs of a second call)`` of one model."""
  name = request.param
  model = build(name)
  args = inputs()
  variables = random_variables(model, args)
  fn = jax.jit(lambda v, *a: _contract_outputs(model, v, a))
  return name, model, args, variables, fn(variables, *args), fn(variables, *args)


def _check_shapes_and_finite(model, outputs):
  for pred, feats in outputs:
    assert pred.shape == (B, H, C)
    assert feats["hidden"].shape == (B, C, model.feature_dim)
    assert np.all(np.isfinite(pred)) and np.all(np.isfinite(feats["hidden"]))


def test_shapes_and_finite(contract):
  _, model, _, _, out, _ = contract
  _check_shapes_and_finite(model, (out["eval"], out["train"], out["train_other_key"]))


@pytest.mark.parametrize("name", NAMES)
def test_no_time_features(name):
  # F = 0 (Solar): the embeddings have no temporal part and the model still runs, both modes.
  model = build(name)
  args = inputs(num_marks=0)
  variables = random_variables(model, args)
  assert "temporal" not in str(jax.tree_util.tree_structure(variables))
  outputs = jax.jit(lambda v, *a: (model.apply(v, *a, train=False),
                                   _apply_train(model, v, a, jax.random.key(3))))(variables, *args)
  _check_shapes_and_finite(model, outputs)


def test_jit_equals_eager(contract):
  _, model, args, variables, out, _ = contract
  eager = model.apply(variables, *args, train=False)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                         eager, out["eval"])


def test_deterministic(contract):
  # The same variables, inputs and dropout keys give bit-identical outputs and gradients.
  _, _, _, _, out, again = contract
  jax.tree_util.tree_map(np.testing.assert_array_equal, out, again)


def test_dropout_only_in_training(contract):
  _, model, _, _, out, _ = contract
  for other in (out["eval_rng4"], out["eval_rng5"]):  # eval ignores any dropout key
    jax.tree_util.tree_map(np.testing.assert_array_equal, out["eval"], other)
  if getattr(model, "dropout", 0.0) > 0:
    assert not np.allclose(out["train"][0], out["train_other_key"][0])  # keys give masks
    assert not np.allclose(out["train"][0], out["eval"][0])
  else:  # no dropout: training does not depend on the key
    jax.tree_util.tree_map(np.testing.assert_array_equal, out["train"], out["train_other_key"])


def test_every_parameter_gets_gradient(contract):
  name, _, _, _, out, _ = contract
  grads = flax.traverse_util.flatten_dict(out["grads"])
  exempt = UNUSED_PARAMS.get(name, set())
  missing = ["/".join(p) for p, g in grads.items()
             if not any(p[:len(e)] == e for e in exempt)
             and not (np.all(np.isfinite(g)) and np.any(g != 0))]
  assert not missing, f"no (finite) gradient for: {missing}"
  for path in exempt:  # and the exempt ones exist and really are unused
    matched = [g for p, g in grads.items() if p[:len(path)] == path]
    assert matched and all(not np.any(g) for g in matched), path


@pytest.mark.parametrize("name", NAMES)
def test_unknown_setting_is_rejected(name):
  with pytest.raises(ConfigError, match="no setting"):
    build(name, not_a_setting=1)
