"""Training steps, schedules and the loop: trace once, masks, determinism, metrics."""

import json

import chex
import jax
import ml_collections
import numpy as np
import pytest

from configs import student as student_config
from timedistill_jax import steps, trainer
from timedistill_jax.data import iterate_batches, load_dataset
from timedistill_jax.metrics import MetricAccumulator
from timedistill_jax.models.student import MLP
from timedistill_jax.train_state import create_train_state, make_optimizer, make_schedule


def test_type1_schedule_halves_from_the_third_epoch():
  cfg = ml_collections.ConfigDict(dict(lr=0.01, schedule="type1", weight_decay=0.0))
  schedule = make_schedule(cfg, steps_per_epoch=10, epochs=100)
  lrs = [float(schedule(e * 10 + 3)) for e in range(5)]
  np.testing.assert_allclose(lrs, [0.01, 0.01, 0.005, 0.0025, 0.00125], rtol=1e-6)


def test_type4_schedule_decays_by_a_tenth_from_the_fifth_epoch():
  # The reference's type4: lr_adjust = lr if e < 3 else lr * 0.9 ** (e - 3), set after epoch e.
  cfg = ml_collections.ConfigDict(dict(lr=0.01, schedule="type4", weight_decay=0.0))
  schedule = make_schedule(cfg, steps_per_epoch=10, epochs=100)
  lrs = [float(schedule(e * 10 + 9)) for e in range(7)]
  np.testing.assert_allclose(lrs, [0.01, 0.01, 0.01, 0.01, 0.009, 0.0081, 0.00729], rtol=1e-6)


def _small_setup(batch_size=8):
  splits = load_dataset("synthetic", seq_len=48, label_len=8, pred_len=12)
  model = MLP(seq_len=48, label_len=8, pred_len=12, enc_in=7, d_model=16)
  sample = trainer.sample_batch(splits)
  variables = model.init(jax.random.PRNGKey(0), sample["x"], None, None, train=False)
  cfg = ml_collections.ConfigDict(dict(lr=0.01, schedule="type1", weight_decay=0.0))
  tx = make_optimizer(cfg, steps_per_epoch=10, epochs=10)
  state = create_train_state({"model": variables["params"]}, variables["batch_stats"], tx,
                             jax.random.PRNGKey(1))
  return splits, model, state


def test_train_step_traces_once_including_the_padded_last_batch():
  splits, model, state = _small_setup()
  step = jax.jit(chex.assert_max_traces(
      lambda s, b: steps.train_step(s, b, model=model, pred_len=12), n=1), donate_argnums=0)
  n = len(splits.train)
  last = n - n % 8  # start of the short last batch
  idx = [np.arange(8), np.arange(8, 16), np.r_[np.arange(last, n), np.zeros(8 - n % 8, int)]]
  for i in idx:
    batch = trainer.host_batch(splits.train.get_batch(i) | {
        "mask": (np.arange(8) < (n - last if i[0] == last else 8)).astype(np.float32)})
    state, metrics = step(state, batch)
  assert np.isfinite(float(metrics["loss"]))


def test_padded_masked_step_equals_step_on_the_real_rows():
  splits, model, state = _small_setup()
  real = splits.train.get_batch(np.arange(5))
  padded = splits.train.get_batch(np.r_[np.arange(5), [0, 0, 0]])
  small = trainer.host_batch(real | {"mask": np.ones(5, np.float32)})
  big = trainer.host_batch(padded | {"mask": np.array([1] * 5 + [0] * 3, np.float32)})
  step = lambda s, b: steps.train_step(s, b, model=model, pred_len=12)
  s1, m1 = jax.jit(step)(state, small)
  s2, m2 = jax.jit(step)(state, big)
  np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               s1.params, s2.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               s1.batch_stats, s2.batch_stats)


def test_metrics_cover_every_window_exactly_once():
  splits, model, state = _small_setup()
  variables = steps.model_variables(state.params["model"], state.batch_stats)
  eval_fn = steps.jit_eval_step(model, pred_len=12, f_dim=0)
  acc = MetricAccumulator()
  for batch in iterate_batches(splits.test, 64):
    acc.add(eval_fn(variables, trainer.host_batch(batch)))
  got = acc.result()
  # Reference: predictions of every window, concatenated, then numpy means.
  preds, trues = [], []
  for start in range(0, len(splits.test), 100):
    b = splits.test.get_batch(np.arange(start, min(start + 100, len(splits.test))))
    pred, _ = model.apply(variables, b["x"], None, None, train=False)
    preds.append(np.asarray(pred))
    trues.append(b["y"][:, -12:])
  pred, true = np.concatenate(preds), np.concatenate(trues)
  assert got["windows"] == len(splits.test) == len(pred)
  np.testing.assert_allclose(got["mse"], np.mean((pred - true) ** 2), rtol=1e-5)
  np.testing.assert_allclose(got["mae"], np.mean(np.abs(pred - true)), rtol=1e-5)


def _smoke_config(**overrides):
  config = student_config.get_config("dataset=synthetic,pred_len=12,model=mlp,smoke=True")
  config.data.seq_len, config.data.label_len = 48, 8
  config.model.d_model = 16
  config.train.progress = False
  for k, v in overrides.items():
    config[k] = v
  return config


def test_same_seed_same_result(tmp_path):
  r1 = trainer.train_and_evaluate(_smoke_config(), tmp_path / "a")
  r2 = trainer.train_and_evaluate(_smoke_config(), tmp_path / "b")
  assert r1["test"] == r2["test"]
  files = {p.name for p in (tmp_path / "a").iterdir()}
  assert {"config.json", "metrics.jsonl", "results.json", "checkpoints"} <= files
  lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == 2 and "val" in json.loads(lines[0])


def test_a_finished_run_is_not_trained_again(tmp_path, capsys):
  first = trainer.train_and_evaluate(_smoke_config(), tmp_path)
  second = trainer.train_and_evaluate(_smoke_config(), tmp_path)
  assert first == second
  assert "already holds a finished run" in capsys.readouterr().out


def test_resume_after_an_epoch_gives_the_same_result(tmp_path):
  full = trainer.train_and_evaluate(_smoke_config(), tmp_path / "full")
  config = _smoke_config()
  config.train.epochs = 1
  trainer.train_and_evaluate(config, tmp_path / "resumed")
  (tmp_path / "resumed" / "results.json").unlink()  # as if it had been stopped after epoch 1
  resumed = trainer.train_and_evaluate(_smoke_config(), tmp_path / "resumed")
  assert resumed["test"] == pytest.approx(full["test"], rel=1e-6)
