"""The pure steps of timedistill_jax/steps.py: one trace for every batch of an epoch, masked
padding, every window scored once, the distillation step with teachers run or cached, several
teachers, the per-device weighting under a device axis, and many steps (or a whole split's
evaluation) in one call on windows gathered on the device.

Everything here runs the steps directly on a few synthetic batches; the teachers are freshly
initialised (the steps do not care whether a teacher was trained).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.helpers import (RUN_H, RUN_L, RUN_S, SMALL_KWARGS, TINY_TEACHER, inputs,
                           random_variables)
from tests import helpers
from timedistill_jax import runs, steps
from timedistill_jax.data import iterate_batches, load_dataset
from timedistill_jax.data.device import device_data, pad_batches, split_offsets, window_starts
from timedistill_jax.metrics import MetricAccumulator
from timedistill_jax.models import build_model, init_variables
from timedistill_jax.models.regressor import Regressor
from timedistill_jax.train_state import create_distill_state, create_train_state, make_optimizer

OPTIM = ml_collections.ConfigDict(dict(lr=0.01, schedule="type1", weight_decay=0.0))
KD_PARTS = {"loss", "sup", "pred_scale", "pred_period", "feat_scale", "feat_period"}


@pytest.fixture(scope="module")
def splits():
  return load_dataset("synthetic", seq_len=RUN_L, label_len=RUN_S, pred_len=RUN_H)


def _model(splits, name, axis_name=None, **kwargs):
  return build_model(ml_collections.ConfigDict(dict(name=name, **kwargs)), seq_len=RUN_L,
                     label_len=RUN_S, pred_len=RUN_H, enc_in=splits.num_channels,
                     axis_name=axis_name)


def _student_state(splits, model):
  """A fresh supervised state of ``model`` (the student baseline's)."""
  variables = init_variables(model, runs.sample_batch(splits), jax.random.PRNGKey(0))
  return create_train_state({"model": variables["params"]}, variables.get("batch_stats", {}),
                            make_optimizer(OPTIM, steps_per_epoch=10, epochs=10),
                            jax.random.PRNGKey(1))


def _batch(splits, rows, real=None):
  """Training windows ``rows`` as a step batch; rows from ``real`` on are masked padding."""
  real = len(rows) if real is None else real
  return runs.host_batch(splits.train.get_batch(np.asarray(rows)) | {
      "mask": (np.arange(len(rows)) < real).astype(np.float32)})


def _padded(splits, real, size=8):
  """The first ``real`` windows padded to ``size`` rows with window 0, masked."""
  return _batch(splits, np.r_[np.arange(real), np.zeros(size - real, int)], real)


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


# ---- train_step and eval_step ------------------------------------------------------------------

def test_train_step_traces_once_including_the_padded_last_batch(splits):
  model = _model(splits, "mlp", d_model=16)
  state = _student_state(splits, model)
  step = jax.jit(chex.assert_max_traces(
      lambda s, b: steps.train_step(s, b, model=model, pred_len=RUN_H), n=1), donate_argnums=0)
  n = len(splits.train)
  last = n - n % 8  # start of the short last batch
  for rows in (np.arange(8), np.arange(8, 16), np.r_[np.arange(last, n),
                                                     np.zeros(8 - n % 8, int)]):
    state, metrics = step(state, _batch(splits, rows, n - last if rows[0] == last else 8))
  assert np.isfinite(float(metrics["loss"]))
  assert int(state.step) == 3


def test_padded_masked_step_equals_step_on_the_real_rows(splits):
  model = _model(splits, "mlp", d_model=16)
  state = _student_state(splits, model)
  step = jax.jit(lambda s, b: steps.train_step(s, b, model=model, pred_len=RUN_H))
  s1, m1 = step(state, _batch(splits, np.arange(5)))
  s2, m2 = step(state, _padded(splits, 5))
  np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
  _assert_trees_close(s1.params, s2.params)
  _assert_trees_close(s1.batch_stats, s2.batch_stats)


def test_eval_step_on_a_padded_batch_sums_the_real_rows(splits):
  model = _model(splits, "dmlp", d_model=16)
  variables = runs.eval_variables(_student_state(splits, model))
  eval_fn = steps.jit_eval_step(model, pred_len=RUN_H)
  _assert_trees_close(eval_fn(variables, _batch(splits, np.arange(5))),
                      eval_fn(variables, _padded(splits, 5)))


def test_metrics_cover_every_window_exactly_once(splits):
  model = _model(splits, "mlp", d_model=16)
  variables = runs.eval_variables(_student_state(splits, model))
  eval_fn = steps.jit_eval_step(model, pred_len=RUN_H, f_dim=0)
  acc = MetricAccumulator()
  for batch in iterate_batches(splits.test, 64):
    acc.add(eval_fn(variables, runs.host_batch(batch)))
  got = acc.result()
  # Reference: predictions of every window, concatenated, then numpy means.
  preds, trues = [], []
  for start in range(0, len(splits.test), 100):
    b = splits.test.get_batch(np.arange(start, min(start + 100, len(splits.test))))
    pred, _ = model.apply(variables, b["x"], None, None, train=False)
    preds.append(np.asarray(pred))
    trues.append(b["y"][:, -RUN_H:])
  pred, true = np.concatenate(preds), np.concatenate(trues)
  assert got["windows"] == len(splits.test) == len(pred)
  np.testing.assert_allclose(got["mse"], np.mean((pred - true) ** 2), rtol=1e-5)
  np.testing.assert_allclose(got["mae"], np.mean(np.abs(pred - true)), rtol=1e-5)


# ---- distill_step and cached_distill_step ------------------------------------------------------

@pytest.fixture(scope="module")
def teachers(splits):
  """Two tiny iTransformers ``(model, variables)``, initialised from different seeds."""
  model = _model(splits, "itransformer", **TINY_TEACHER)
  batch = runs.sample_batch(splits, 8)
  return [(model, init_variables(model, batch, jax.random.PRNGKey(seed))) for seed in (1, 2)]


def _distill_setup(splits, teachers, student_name="mlp", axis_name=None):
  student = _model(splits, student_name, axis_name=axis_name, d_model=16)
  state = create_distill_state(student, [t for t, _ in teachers],
                               make_optimizer(OPTIM, 10, 10), jax.random.PRNGKey(0),
                               runs.sample_batch(splits, 8))
  kw = dict(student=student, regressor=Regressor(student.feature_dim),
            loss=steps.LossConfig(alpha=1.0, beta=1.0), pred_len=RUN_H)
  return student, state, kw


def test_distill_step_traces_once_and_reports_every_part(splits, teachers):
  _, state, kw = _distill_setup(splits, teachers[:1], "dmlp")
  (teacher, t_vars), = teachers[:1]
  step = jax.jit(chex.assert_max_traces(
      lambda s, tv, b: steps.distill_step(s, tv, b, teachers=(teacher,), **kw), n=1),
      donate_argnums=0)
  for rows, real in ((np.arange(8), 8), (np.arange(8, 16), 8), (np.arange(16, 24), 5)):
    state, metrics = step(state, [t_vars], _batch(splits, rows, real))
  assert set(metrics) == KD_PARTS
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert set(state.params) == {"model", "regressors"}  # the teacher is not trained
  assert int(state.step) == 3


def test_cached_teacher_outputs_give_the_same_step(splits, teachers):
  _, state, kw = _distill_setup(splits, teachers[:1])
  models, variables = [t for t, _ in teachers[:1]], [v for _, v in teachers[:1]]
  preds, hiddens = runs.precompute_teacher_outputs(models, variables, splits.train, 64)
  assert preds[0].shape == (len(splits.train), RUN_H, 7)
  idx = np.array([3, 50, 7, 99, 0, 1, 2, 5])
  batch = _batch(splits, idx)
  s1, m1 = jax.jit(lambda s, tv, b: steps.distill_step(s, tv, b, teachers=tuple(models), **kw))(
      state, variables, batch)
  cached = batch | {"teacher_pred": (preds[0][idx],), "teacher_hidden": (hiddens[0][idx],)}
  s2, m2 = jax.jit(lambda s, b: steps.cached_distill_step(s, b, **kw))(state, cached)
  assert set(m1) == set(m2) == KD_PARTS
  for k in m1:
    np.testing.assert_allclose(m1[k], m2[k], rtol=1e-5, atol=1e-6)
  _assert_trees_close(s1.params, s2.params)


def test_gradient_reaches_the_regressor_only_through_the_feature_terms(splits, teachers):
  student, state, kw = _distill_setup(splits, teachers[:1])
  batch = _batch(splits, np.arange(8))
  outs = steps.teacher_outputs([t for t, _ in teachers[:1]], [v for _, v in teachers[:1]], batch)

  def change(alpha, beta):
    update = lambda s, b, o: steps._distill_update(
        s, b, o, student=student, regressor=kw["regressor"],
        loss=steps.LossConfig(alpha, beta), pred_len=RUN_H, f_dim=0)
    new_state, _ = jax.jit(update)(state, batch, outs)
    g = jax.tree.map(lambda a, b: a - b, new_state.params["regressors"],
                     state.params["regressors"])
    return sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g))

  assert change(1.0, 0.0) == 0.0  # prediction terms and L_sup never touch the regressor
  assert change(0.0, 1.0) > 0.0  # feature terms train it, through the teacher side


def test_two_teachers_average_the_distillation_terms(splits, teachers):
  student, state, kw = _distill_setup(splits, teachers)
  batch = _batch(splits, np.arange(8))
  outs = steps.teacher_outputs([t for t, _ in teachers], [v for _, v in teachers], batch)
  update = jax.jit(lambda s, b, o: steps._distill_update(s, b, o, f_dim=0, **kw))
  _, both = update(state, batch, outs)
  singles = []
  for i in range(2):
    one = state.replace(params={"model": state.params["model"],
                                "regressors": [state.params["regressors"][i]]})
    one = one.replace(opt_state=one.tx.init(one.params))
    singles.append(update(one, batch, [outs[i]])[1])
  for k in both:
    np.testing.assert_allclose(both[k], (singles[0][k] + singles[1][k]) / 2, rtol=1e-5)


@pytest.mark.parametrize("name", ["autoformer", "fedformer"])
def test_teacher_features_with_fewer_rows_than_channels_distil(name):
  # More variates than d_model (Traffic: C = 862 > 512; Solar FEDformer: 137 > 64). The
  # reference takes features[-2].permute(0, 2, 1)[:, :C]: only d_model rows exist when
  # C > d_model (checked against the reference model at C = 20, d_model = 16: max diff 3e-6),
  # and its trainer then cuts the student's features to those rows.
  wide, b, h = 20, helpers.B, helpers.H
  model = helpers.build(name, enc_in=wide)
  x, x_mark, y_mark = inputs(channels=wide)
  variables = random_variables(model, (x, x_mark, y_mark))
  pred, feats = jax.jit(model.apply)(variables, x, x_mark, y_mark)
  assert pred.shape == (b, h, wide)
  assert feats["hidden"].shape == (b, SMALL_KWARGS[name]["d_model"], helpers.L)

  student = helpers.build("mlp", enc_in=wide, d_model=8, norm="non-stationary", moving_avg=25)
  y = jax.random.normal(jax.random.key(9), (b, helpers.LABEL_LEN + h, wide))
  batch = dict(x=x, x_mark=x_mark, y_mark=y_mark, y=y, mask=jnp.ones((b,), jnp.float32))
  state = create_distill_state(student, [model], make_optimizer(OPTIM, 1, 1),
                               jax.random.key(1), batch)
  _, metrics = steps.cached_distill_step(
      state, batch | {"teacher_pred": (pred,), "teacher_hidden": (feats["hidden"],)},
      student=student, regressor=Regressor(student.feature_dim),
      loss=steps.LossConfig(alpha=1.0, beta=1.0), pred_len=h)
  assert set(metrics) == KD_PARTS
  assert np.isfinite(float(metrics["feat_scale"])) and np.isfinite(float(metrics["feat_period"]))


# ---- several devices: the step under a device axis ---------------------------------------------

@pytest.mark.parametrize("kind", ["train", "distill"])
def test_device_weighting_makes_four_devices_equal_one(splits, teachers, kind):
  # The step body under a named device axis (jax.vmap binds it as pmap would, without fake
  # devices): 8 rows, 5 of them real, spread 2/2/1/0 over 4 devices. device_weight turns each
  # device's masked mean into its share of the global mean, and the BatchNorm statistics add
  # over devices, so every device ends with the one-device state and metrics.
  axis = "devices"
  batch = _padded(splits, 5)
  split = jax.tree.map(lambda a: a.reshape((4, 2) + a.shape[1:]), batch)
  if kind == "train":
    plain, on_axis = _model(splits, "dmlp", d_model=16), _model(splits, "dmlp", axis, d_model=16)
    state = _student_state(splits, plain)
    one = functools.partial(steps.train_step, model=plain, pred_len=RUN_H)
    many = functools.partial(steps.train_step, model=on_axis, pred_len=RUN_H, axis_name=axis)
    args = ()
  else:
    _, state, kw = _distill_setup(splits, teachers[:1], "dmlp")
    on_axis = _model(splits, "dmlp", axis, d_model=16)
    t_models, args = (teachers[0][0],), ([teachers[0][1]],)
    one = functools.partial(steps.distill_step, teachers=t_models, **kw)
    many = functools.partial(steps.distill_step, teachers=t_models,
                             **(kw | {"student": on_axis}), axis_name=axis)
  s1, m1 = jax.jit(lambda s, b, *a: one(s, *a, b))(state, batch, *args)
  s4, m4 = jax.jit(jax.vmap(lambda s, b, *a: many(s, *a, b), in_axes=(None, 0) + (None,) * len(args),
                            axis_name=axis))(state, split, *args)
  assert set(m4) == set(m1)
  for d in range(4):
    device = lambda tree: jax.tree.map(lambda a: a[d], tree)
    _assert_trees_close(device(m4), m1, rtol=1e-5, atol=1e-6)
    _assert_trees_close(device(s4.params), s1.params, rtol=1e-5, atol=1e-6)
    _assert_trees_close(device(s4.batch_stats), s1.batch_stats, rtol=1e-5, atol=1e-6)


# ---- many steps in one call, windows gathered on the device ------------------------------------

def _epoch_blocks(splits, batch_size=48):
  """One shuffled epoch of training batches as device rows (the last one padded)."""
  data = device_data(splits)
  start, mask = window_starts(splits.train, split_offsets(splits)["train"], batch_size,
                              shuffle=True, seed=5, epoch=1)
  return data, start, mask


@pytest.mark.parametrize("kind", ["train", "cached distill"])
def test_k_steps_in_one_call_are_k_calls_of_one_step(splits, teachers, kind):
  data, start, mask = _epoch_blocks(splits)
  tail = slice(len(start) - 5, len(start))  # five steps, the padded last batch included
  start, mask = start[tail], mask[tail]
  assert mask[-1].sum() < mask.shape[1]
  if kind == "train":
    model = _model(splits, "dmlp", d_model=16)
    state = _student_state(splits, model)
    body = functools.partial(steps.train_step, model=model, pred_len=RUN_H)
  else:
    _, state, kw = _distill_setup(splits, teachers[:1], "dmlp")
    preds, hiddens = runs.precompute_teacher_outputs(
        [teachers[0][0]], [teachers[0][1]], splits.train, 64)
    data = data.with_teacher_outputs(preds, hiddens)
    body = functools.partial(steps.cached_distill_step, **kw)
  loop = jax.jit(lambda s, d, st, m, n: steps.run_steps(body, s, data=d, start=st, mask=m,
                                                        count=n))
  # Seven batches compiled, five run: the two padded ones never run.
  st7, m7 = pad_batches(start, mask, 7)
  looped, outs = loop(state, data, st7, m7, 5)
  assert int(looped.step) == int(state.step) + 5
  one = jax.jit(body)
  for k in range(5):
    state, metrics = one(state, data.gather(start[k], mask[k]))
    for name, value in metrics.items():
      np.testing.assert_allclose(outs[name][k], value, rtol=1e-6, atol=1e-7, err_msg=name)
  assert all(float(np.abs(v[5:]).sum()) == 0 for v in outs.values())
  _assert_trees_close(looped.params, state.params, rtol=1e-6, atol=1e-7)
  _assert_trees_close(looped.batch_stats, state.batch_stats, rtol=1e-6, atol=1e-7)


def test_evaluator_equals_the_host_pipeline(splits):
  model = _model(splits, "dmlp", d_model=16)
  variables = runs.eval_variables(_student_state(splits, model))
  config = ml_collections.ConfigDict(dict(
      data=dict(pred_len=RUN_H, eval_batch_size=64, features="M"), train=dict()))
  evaluate = runs.Evaluator(model, config, splits)
  eval_fn = steps.jit_eval_step(model, pred_len=RUN_H)
  for name in ("val", "test"):
    acc = MetricAccumulator()
    for batch in iterate_batches(getattr(splits, name), 64):
      acc.add(eval_fn(variables, runs.host_batch(batch)))
    want, got = acc.result(), evaluate(variables, name)
    assert got["windows"] == want["windows"] == len(getattr(splits, name))
    for key in want:
      np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=f"{name} {key}")
