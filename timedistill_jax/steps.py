"""Every pure step: train, eval, predict and distill (teacher run on the batch, or cached).

Each step is written once for one device, with an ``axis_name`` argument that ``parallel.py``
binds under ``pmap`` / ``shard_map``; static things (modules, loss weights) are bound with
``functools.partial`` before ``jax.jit``, so only arrays cross the jit boundary.

A batch is a dict of arrays: ``x [B, L, C]``, ``y [B, label_len + H, C]``, ``x_mark``,
``y_mark`` and ``mask [B]`` (1 real window, 0 padding). The padded last batch of an epoch is
masked out of the loss and of the BatchNorm statistics, so it trains exactly like the smaller
batch the reference feeds, and a jitted step keeps one shape (one trace).

Distillation (``distill_step``): the teachers run in eval mode under ``stop_gradient`` and are
never in the optimiser state; the student and one regressor per teacher are trained together.
The regressed teacher feature stays a trainable function, so the feature-level terms send
gradient into the regressor through the teacher side too, as in the reference. With several
teachers each gets its own regressor and the distillation terms are averaged over teachers. A
frozen teacher gives the same output for a window in every epoch, so ``cached_distill_step``
reads precomputed teacher outputs from the batch instead (``tests/test_steps.py`` checks that
both give the same step).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from timedistill_jax import losses
from timedistill_jax.metrics import batch_error_sums
from timedistill_jax.models.regressor import Regressor


@dataclasses.dataclass(frozen=True)
class LossConfig:
  alpha: float
  beta: float
  temperature: float = 0.5
  num_scales: int = 3
  sup_weight: float = 1.0  # the three switches of the paper's loss ablation (paper Table 4)
  scale_weight: float = 1.0
  period_weight: float = 1.0

  @classmethod
  def from_config(cls, distill_config) -> "LossConfig":
    d = distill_config
    return cls(alpha=float(d.alpha), beta=float(d.beta), temperature=float(d.temperature),
               num_scales=int(d.num_scales), sup_weight=float(d.get("sup_weight", 1.0)),
               scale_weight=float(d.get("scale_weight", 1.0)),
               period_weight=float(d.get("period_weight", 1.0)))


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


def step_rng(state, axis_name):
  """The step's dropout key: ``fold_in(rng, step)``, and the device index across devices."""
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  return rng


def _update(state, batch, loss_fn, axis_name):
  """The update every training step shares.

  ``loss_fn(params, rng) -> (loss, (parts, batch_stats))`` is this device's masked-mean loss;
  it is weighted into the global mean, differentiated, averaged over devices and applied.
  """
  rng = step_rng(state, axis_name)
  weight = device_weight(batch["mask"], axis_name)

  def weighted(params):
    loss, (parts, new_stats) = loss_fn(params, rng)
    return loss * weight, (jax.tree.map(lambda v: v * weight, parts), new_stats)

  (loss, (parts, new_stats)), grads = jax.value_and_grad(weighted, has_aux=True)(state.params)
  state = state.apply_gradients(_pmean(grads, axis_name), batch_stats=new_stats)
  return state, _pmean({"loss": loss} | parts, axis_name)


def train_step(state, batch, *, model, pred_len: int, f_dim: int = 0, axis_name=None):
  """One supervised step (MSE) of ``model``. Returns ``(state, metrics)``."""

  def loss_fn(params, rng):
    variables = model_variables(params["model"], state.batch_stats)
    pred, _, new_stats = apply_model(model, variables, batch, train=True, rng=rng)
    loss = losses.mse(pred[..., f_dim:], target_of(batch, pred_len, f_dim), batch["mask"])
    return loss, ({"sup": loss}, new_stats)

  return _update(state, batch, loss_fn, axis_name)


def teacher_outputs(teachers, teacher_variables, batch):
  """``[(pred [B, H, C], hidden [B, C, d_t]), ...]`` of the frozen teachers, eval mode."""
  outs = []
  for model, variables in zip(teachers, teacher_variables):
    pred, features, _ = apply_model(model, variables, batch, train=False)
    outs.append(jax.lax.stop_gradient((pred, features["hidden"])))
  return outs


def loss_weights(loss: LossConfig) -> dict:
  """The five weights of a loss's parts (``losses.timedistill_loss``'s arguments)."""
  return {"alpha": loss.alpha, "beta": loss.beta, "sup_weight": loss.sup_weight,
          "scale_weight": loss.scale_weight, "period_weight": loss.period_weight}


def _distill_update(state, batch, outs, *, student, regressor, loss: LossConfig, pred_len: int,
                    f_dim: int, axis_name=None, weights=None):
  """``weights``: traced loss weights (``loss_weights``'s keys) that replace ``loss``'s, so that
  the members of an ensemble may each have their own alpha, beta and ablation switches."""
  y = target_of(batch, pred_len, f_dim)
  mask = batch["mask"]
  weights = loss_weights(loss) if weights is None else weights

  def loss_fn(params, rng):
    variables = model_variables(params["model"], state.batch_stats)
    pred_s, feats_s, new_stats = apply_model(student, variables, batch, train=True, rng=rng)
    totals, parts = [], []
    for reg_params, (pred_t, hidden_t) in zip(params["regressors"], outs):
      hidden_t = regressor.apply(reg_params, hidden_t)  # [B, C_t, D]
      # FEDformer / Autoformer features have min(C, d_model) rows (Traffic: 512 of 862, Solar
      # FEDformer: 64 of 137); the reference then compares only the student's first C_t rows.
      hidden_s = feats_s["hidden"][:, :hidden_t.shape[1]]
      total, p = losses.timedistill_loss(
          pred_s[..., f_dim:], pred_t[..., f_dim:], hidden_s, hidden_t, y,
          temperature=loss.temperature, num_scales=loss.num_scales, mask=mask, **weights)
      totals.append(total)
      parts.append(p)
    n = len(totals)
    mean_parts = {k: sum(p[k] for p in parts) / n for k in parts[0]}
    return sum(totals) / n, (mean_parts, new_stats)

  return _update(state, batch, loss_fn, axis_name)


def distill_step(state, teacher_variables, batch, *, student, teachers, regressor,
                 loss: LossConfig, pred_len: int, f_dim: int = 0, axis_name=None, weights=None):
  """One distillation step with the teachers run on the batch (the reference's way)."""
  outs = teacher_outputs(teachers, teacher_variables, batch)
  return _distill_update(state, batch, outs, student=student, regressor=regressor, loss=loss,
                         pred_len=pred_len, f_dim=f_dim, axis_name=axis_name, weights=weights)


def cached_distill_step(state, batch, *, student, regressor, loss: LossConfig, pred_len: int,
                        f_dim: int = 0, axis_name=None, weights=None):
  """The same step with teacher outputs precomputed: ``batch["teacher_pred"]`` and
  ``batch["teacher_hidden"]`` are tuples with one entry per teacher."""
  outs = list(zip(batch["teacher_pred"], batch["teacher_hidden"]))
  return _distill_update(state, batch, outs, student=student, regressor=regressor, loss=loss,
                         pred_len=pred_len, f_dim=f_dim, axis_name=axis_name, weights=weights)


def eval_step(variables, batch, *, model, pred_len: int, f_dim: int = 0, axis_name=None):
  """Error sums of ``model`` (eval mode) over the real windows of a batch (of all devices)."""
  pred, _, _ = apply_model(model, variables, batch, train=False)
  sums = batch_error_sums(pred[..., f_dim:], target_of(batch, pred_len, f_dim), batch["mask"])
  return sums if axis_name is None else jax.lax.psum(sums, axis_name)


def predict_step(variables, batch, *, model):
  pred, _, _ = apply_model(model, variables, batch, train=False)
  return pred


# -- many steps per call, windows gathered on the device ------------------------------------------

def _loop(call, carry, count, num: int):
  """``count`` (traced, at most ``num``) iterations of ``call(carry, k) -> (carry, out)``; every
  leaf of ``out`` stacked to ``[num, ...]``, zeros past ``count``."""
  shapes = jax.eval_shape(lambda c: call(c, 0)[1], carry)
  # Under shard_map a buffer must vary over the mesh axes of what is written into it, and zeros
  # made from nothing vary over none: tie them to the carry, which varies like a step's outputs
  # (over an ensemble's member axis, not over the data axis its metrics are averaged on).
  anchor = jnp.where(True, 0, jax.tree.leaves(carry)[0].reshape(-1)[0])
  outs = jax.tree.map(lambda a: jnp.zeros((num,) + a.shape, a.dtype) + anchor.astype(a.dtype),
                      shapes)

  def one(k, loop):
    carry, outs = loop
    carry, out = call(carry, k)
    return carry, jax.tree.map(lambda buf, v: buf.at[k].set(v), outs, out)

  return jax.lax.fori_loop(0, count, one, (carry, outs))


def run_steps(body, carry, *args, data, start, mask, count, axis_name=None):
  """``count`` calls of ``body(carry, *args, batch, axis_name=...) -> (carry, out)`` in one
  program, batch ``k`` being the windows that start at rows ``start[k]`` of ``data`` (a
  ``data.device.DeviceData``), masked by ``mask[k]``.

  ``start, mask: [K, B]`` (this device's columns); ``count <= K`` is a traced scalar, so one
  compiled program serves every call of a run, the short ones at an epoch's end included.
  Returns ``(carry, outs)`` with every leaf of ``out`` stacked to ``[K, ...]`` (entries past
  ``count`` are zeros). The step's own dropout key is ``fold_in(rng, step)``, so ``K`` steps in
  one call are the ``K`` steps of ``K`` calls.
  """
  def call(carry, k):
    return body(carry, *args, data.gather(start[k], mask[k]), axis_name=axis_name)

  return _loop(call, carry, count, start.shape[0])


def run_member_steps(body, carry, *args, data, start, mask, count, axis_name=None):
  """:func:`run_steps` for an ensemble: every leaf of ``carry`` has a leading member axis,
  ``start, mask`` are ``[M, K, B]``, and each of the ``count`` iterations runs every member's
  step at once (``jax.vmap`` over the members inside the loop, so the loop itself is one, with a
  plain trip count). ``args`` and ``data`` are shared. Returns ``(carry, outs [M, K, ...])``."""
  member = jax.vmap(lambda c, s, m: body(c, *args, data.gather(s, m), axis_name=axis_name))

  def call(carry, k):
    return member(carry, start[:, k], mask[:, k])

  carry, outs = _loop(call, carry, count, start.shape[1])
  return carry, jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), outs)


def as_loop_body(fn):
  """``fn(variables, batch, axis_name=...) -> out`` as a ``run_steps`` body that keeps its
  carry (the variables) unchanged: evaluation and prediction over many batches in one call."""
  def body(variables, batch, *, axis_name=None):
    return variables, fn(variables, batch, axis_name=axis_name)
  return body


def jit_train_step(model, *, pred_len: int, f_dim: int = 0):
  """``train_step`` for one device: ``(state, batch) -> (state, metrics)``, state donated."""
  return jax.jit(
      functools.partial(train_step, model=model, pred_len=pred_len, f_dim=f_dim),
      donate_argnums=0)


def jit_eval_step(model, *, pred_len: int, f_dim: int = 0):
  return jax.jit(functools.partial(eval_step, model=model, pred_len=pred_len, f_dim=f_dim))


def jit_distill_step(student, teachers, *, loss: LossConfig, pred_len: int, f_dim: int = 0):
  """``distill_step`` with its static parts bound: ``(state, teacher_variables, batch)``."""
  return jax.jit(functools.partial(
      distill_step, student=student, teachers=tuple(teachers),
      regressor=Regressor(features=student.feature_dim), loss=loss, pred_len=pred_len,
      f_dim=f_dim), donate_argnums=0)
