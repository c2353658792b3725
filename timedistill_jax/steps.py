"""Pure train / eval steps. Static things are bound with ``functools.partial`` before ``jax.jit``.

A batch is a dict of arrays: ``x [B, L, C]``, ``y [B, label_len + H, C]``, ``x_mark``,
``y_mark``, ``mask [B]`` (1 real window, 0 padding) and ``index [B]``. The padded last batch
of an epoch is masked out of the loss and of the BatchNorm statistics, so it trains exactly like
the smaller batch the reference feeds, and the jitted step keeps one shape (one trace).
"""

import functools

import jax
import jax.numpy as jnp

from timedistill_jax import losses
from timedistill_jax.metrics import batch_error_sums


def model_variables(params, batch_stats) -> dict:
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  return variables


def apply_model(model, variables, batch, *, train: bool, rng=None):
  """Runs ``model`` on a batch; in training also returns the updated batch statistics."""
  args = (batch["x"], batch["x_mark"], batch["y_mark"])
  if not train:
    pred, features = model.apply(variables, *args, train=False, mask=batch["mask"])
    return pred, features, variables.get("batch_stats", {})
  (pred, features), mutated = model.apply(
      variables, *args, train=True, mask=batch["mask"], rngs={"dropout": rng},
      mutable=["batch_stats"])
  return pred, features, mutated.get("batch_stats", {})


def target_of(batch, pred_len: int, f_dim: int):
  """The forecast target as the reference slices it: ``y[:, -H:, f_dim:]``."""
  return batch["y"][:, -pred_len:, f_dim:]


def _pmean(tree, axis_name):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def device_weight(mask, axis_name):
  """Weight of this device's masked-mean loss in the global mean: ``n_i * D / N``.

  The losses are means over a device's real windows (``n_i`` of them); the global mean over all
  ``N`` real windows is ``sum_i n_i / N * loss_i``, so ``pmean`` of ``loss_i * n_i * D / N`` is
  exactly the single-device value, padded last batch included. With full batches the weight is
  1 and this is a plain ``pmean``.
  """
  if axis_name is None:
    return 1.0
  n = jnp.sum(mask.astype(jnp.float32))
  total = jax.lax.psum(n, axis_name)
  devices = jax.lax.psum(1.0, axis_name)
  return n * devices / jnp.maximum(total, 1.0)


def train_step(state, batch, *, model, pred_len: int, f_dim: int = 0, axis_name=None):
  """One supervised step (MSE) of ``model``. Returns ``(state, metrics)``."""
  rng = step_rng(state, axis_name)
  weight = device_weight(batch["mask"], axis_name)

  def loss_fn(params):
    variables = model_variables(params["model"], state.batch_stats)
    pred, _, new_stats = apply_model(model, variables, batch, train=True, rng=rng)
    loss = losses.mse(pred[..., f_dim:], target_of(batch, pred_len, f_dim), batch["mask"])
    return loss * weight, new_stats

  (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = _pmean(grads, axis_name)
  state = state.apply_gradients(grads, batch_stats=new_stats)
  metrics = _pmean({"loss": loss, "sup": loss}, axis_name)
  return state, metrics


def step_rng(state, axis_name):
  """The step's dropout key: ``fold_in(rng, step)``, and the device index across devices."""
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  return rng


def eval_step(variables, batch, *, model, pred_len: int, f_dim: int = 0, axis_name=None):
  """Error sums of ``model`` (eval mode) over the real windows of a batch (of all devices)."""
  pred, _, _ = apply_model(model, variables, batch, train=False)
  sums = batch_error_sums(pred[..., f_dim:], target_of(batch, pred_len, f_dim), batch["mask"])
  return sums if axis_name is None else jax.lax.psum(sums, axis_name)


def predict_step(variables, batch, *, model):
  pred, _, _ = apply_model(model, variables, batch, train=False)
  return pred


def jit_train_step(model, *, pred_len: int, f_dim: int):
  """``train_step`` for one device: ``(state, batch) -> (state, metrics)``, state donated."""
  return jax.jit(
      functools.partial(train_step, model=model, pred_len=pred_len, f_dim=f_dim),
      donate_argnums=0)


def jit_eval_step(model, *, pred_len: int, f_dim: int):
  return jax.jit(functools.partial(eval_step, model=model, pred_len=pred_len, f_dim=f_dim))
