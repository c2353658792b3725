"""Distillation: the jitted step, cached teacher outputs, teacher checks, the whole flow."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import distill as distill_config
from configs import teacher as teacher_config
from timedistill_jax import distill, trainer
from timedistill_jax.checkpoints import load_teacher
from timedistill_jax.errors import CheckpointError, ConfigError
from timedistill_jax.models import build_model
from timedistill_jax.run import run
from timedistill_jax.train_state import make_optimizer

L, S, H = 48, 8, 12


def _shrink(config):
  config.data.seq_len, config.data.label_len = L, S
  config.train.progress = False
  return config


def _teacher_config(seed=2021, pred_len=H):
  config = _shrink(teacher_config.get_config(
      f"dataset=synthetic,model=itransformer,pred_len={pred_len},seed={seed},smoke=True"))
  config.model.update(dict(d_model=16, d_ff=16, n_heads=2, e_layers=1))
  return config


def _distill_config(teacher_dirs, student="mlp"):
  config = _shrink(distill_config.get_config(
      f"dataset=synthetic,teacher=itransformer,pred_len={H},student={student},smoke=True"))
  config.model.d_model = 16
  config.teacher.workdir = ",".join(str(t) for t in teacher_dirs)
  return config


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
  """Two tiny iTransformer teachers trained for 2 smoke epochs (different seeds)."""
  root = tmp_path_factory.mktemp("teachers")
  for seed in (1, 2):
    run(_teacher_config(seed), root / f"t{seed}")
  return [root / "t1", root / "t2"]


def _setup(teacher_dirs, student_name="mlp", alpha=1.0, beta=1.0):
  config = _distill_config(teacher_dirs, student_name)
  splits = trainer.load_splits(config)
  loaded = [load_teacher(t) for t in teacher_dirs]
  student = build_model(config.model, seq_len=L, label_len=S, pred_len=H,
                        enc_in=splits.num_channels)
  batch = trainer.sample_batch(splits, 8)
  state = distill.create_distill_state(
      student, [t.model for t in loaded], make_optimizer(config.optim, 10, 10),
      jax.random.PRNGKey(0), batch)
  loss = distill.LossConfig(alpha=alpha, beta=beta)
  return splits, loaded, student, state, batch, loss


def test_distill_step_traces_once_and_reports_every_part(teachers):
  splits, loaded, student, state, _, loss = _setup(teachers[:1], "dmlp")
  step = jax.jit(chex.assert_max_traces(
      lambda s, tv, b: distill.distill_step(
          s, tv, b, student=student, teachers=(loaded[0].model,),
          regressor=distill.Regressor(student.feature_dim), loss=loss, pred_len=H), n=1),
      donate_argnums=0)
  for start in (0, 8, 16):
    batch = trainer.sample_batch(splits, 8)
    batch = trainer.host_batch(splits.train.get_batch(np.arange(start, start + 8))
                               | {"mask": batch["mask"]})
    state, metrics = step(state, [loaded[0].variables], batch)
  assert set(metrics) == {"loss", "sup", "pred_scale", "pred_period", "feat_scale",
                          "feat_period"}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert set(state.params) == {"model", "regressors"}  # the teacher is not trained
  assert int(state.step) == 3


def test_cached_teacher_outputs_give_the_same_step(teachers):
  splits, loaded, student, state, batch, loss = _setup(teachers[:1])
  models, variables = [t.model for t in loaded], [t.variables for t in loaded]
  preds, hiddens = distill.precompute_teacher_outputs(models, variables, splits.train, 64)
  assert preds[0].shape == (len(splits.train), H, 7)
  idx = np.array([3, 50, 7, 99, 0, 1, 2, 5])
  batch = trainer.host_batch(splits.train.get_batch(idx) | {"mask": np.ones(8, np.float32)})
  kw = dict(student=student, regressor=distill.Regressor(student.feature_dim), loss=loss,
            pred_len=H)
  s1, m1 = jax.jit(lambda s, tv, b: distill.distill_step(s, tv, b, teachers=tuple(models), **kw))(
      state, variables, batch)
  cached = batch | {"teacher_pred": (preds[0][idx],), "teacher_hidden": (hiddens[0][idx],)}
  s2, m2 = jax.jit(lambda s, b: distill.cached_distill_step(s, b, **kw))(state, cached)
  for k in m1:
    np.testing.assert_allclose(m1[k], m2[k], rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               s1.params, s2.params)


def test_gradient_reaches_the_regressor_only_through_the_feature_terms(teachers):
  _, loaded, student, state, batch, _ = _setup(teachers[:1])
  outs = distill.teacher_outputs([loaded[0].model], [loaded[0].variables], batch)
  reg = distill.Regressor(student.feature_dim)

  def grads(alpha, beta):
    g = {}
    def capture(state, batch, outs):
      return distill._distill_update(state, batch, outs, student=student, regressor=reg,
                                     loss=distill.LossConfig(alpha, beta), pred_len=H, f_dim=0)
    new_state, _ = jax.jit(capture)(state, batch, outs)
    g = jax.tree.map(lambda a, b: a - b, new_state.params["regressors"], state.params["regressors"])
    return sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g))

  assert grads(1.0, 0.0) == 0.0  # prediction terms and L_sup never touch the regressor
  assert grads(0.0, 1.0) > 0.0  # feature terms train it, through the teacher side


def test_two_teachers_average_the_distillation_terms(teachers):
  _, loaded, student, state, batch, loss = _setup(teachers)
  reg = distill.Regressor(student.feature_dim)
  outs = distill.teacher_outputs([t.model for t in loaded], [t.variables for t in loaded], batch)
  kw = dict(student=student, regressor=reg, loss=loss, pred_len=H, f_dim=0)
  _, both = jax.jit(lambda s, b, o: distill._distill_update(s, b, o, **kw))(state, batch, outs)
  singles = []
  for i in range(2):
    one = state.replace(params={"model": state.params["model"],
                                "regressors": [state.params["regressors"][i]]})
    one = one.replace(opt_state=one.tx.init(one.params))
    _, m = jax.jit(lambda s, b, o: distill._distill_update(s, b, o, **kw))(one, batch, [outs[i]])
    singles.append(m)
  for k in both:
    np.testing.assert_allclose(both[k], (singles[0][k] + singles[1][k]) / 2, rtol=1e-5)


def test_teacher_for_another_horizon_is_refused_before_compiling(teachers, tmp_path):
  config = _distill_config(teachers[:1])
  config.data.pred_len = 24
  with pytest.raises(ConfigError, match=r"horizon 12 \(this run: 24\)"):
    run(config, tmp_path / "kd")
  assert not (tmp_path / "kd").exists()


def test_missing_teacher_is_a_clear_error(tmp_path):
  config = _distill_config([tmp_path / "no_teacher"])
  with pytest.raises(CheckpointError, match="holds no trained model"):
    run(config, tmp_path / "kd")


def test_teacher_then_distillation_end_to_end(teachers, tmp_path):
  meta = load_teacher(teachers[0]).metadata
  assert meta["model"] == "itransformer" and "test" in meta and "val" in meta
  assert len(meta["data"]["scaler_mean"]) == 7
  for cache in (True, False):
    config = _distill_config(teachers)
    config.teacher.cache = cache
    results = run(config, tmp_path / f"kd_{cache}")
    saved = json.loads((tmp_path / f"kd_{cache}" / "results.json").read_text())
    assert saved["test"]["mse"] == results["test"]["mse"] > 0
    assert [t["model"] for t in saved["teachers"]] == ["itransformer"] * 2
    assert saved["num_regressor_params"] == 2 * (16 * 16 + 16 + 16 * 16 + 16)
    # The distilled student reloads alone from its workdir (plots, reuse), regressors dropped.
    student = load_teacher(tmp_path / f"kd_{cache}")
    assert student.metadata["config"]["kind"] == "distill"
    assert "regressors" not in student.variables["params"]
