"""Run assembly of timedistill_jax/runs/: the run kinds, teacher checks before anything
compiles, cached and online teacher outputs, and restore_run of every kind of finished run."""

import json
import shutil

import ml_collections
import pytest

from tests.helpers import distill_run_config, student_run_config, teacher_run_config
from timedistill_jax import runs
from timedistill_jax.errors import CheckpointError, ConfigError
from timedistill_jax.run import run


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
  """Two tiny iTransformer teachers trained for 2 smoke epochs (different seeds)."""
  root = tmp_path_factory.mktemp("teachers")
  for seed in (1, 2):
    run(teacher_run_config(seed), root / f"t{seed}")
  return [root / "t1", root / "t2"]


@pytest.fixture(scope="module")
def distilled(teachers, tmp_path_factory):
  """``{cache: workdir}``: the student distilled from both teachers, with their outputs cached
  (computed once) and computed on every batch."""
  root = tmp_path_factory.mktemp("distilled")
  out = {}
  for cache in (True, False):
    config = distill_run_config(teachers)
    config.teacher.cache = cache
    out[cache] = root / f"kd_{cache}"
    results = run(config, out[cache])
    assert json.loads((out[cache] / "results.json").read_text())["test"] == results["test"]
  return out


@pytest.fixture(scope="module")
def student(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("student") / "dmlp"
  run(student_run_config(), workdir)
  return workdir


def test_every_config_kind_has_a_builder_and_an_unknown_one_is_refused():
  assert set(runs.RUN_KINDS) == {"student", "teacher", "distill"}
  config = student_run_config()
  config.kind = "finetune"
  with pytest.raises(ConfigError, match="unknown run kind \\(config.kind\\) 'finetune'; valid "
                                        "choices: distill, student, teacher"):
    runs.build_run(config, runs.load_splits(config))


def test_teacher_for_another_horizon_is_refused_before_compiling(teachers, tmp_path):
  config = distill_run_config(teachers[:1])
  config.data.pred_len = 24
  with pytest.raises(ConfigError, match=r"horizon 12 \(this run: 24\)"):
    run(config, tmp_path / "kd")
  assert not (tmp_path / "kd").exists()


def test_missing_teacher_is_a_clear_error(tmp_path):
  config = distill_run_config([tmp_path / "no_teacher"])
  with pytest.raises(CheckpointError, match="holds no trained model"):
    run(config, tmp_path / "kd")


def test_damaged_teacher_is_refused(teachers, tmp_path):
  copy = tmp_path / "teacher"
  shutil.copytree(teachers[0], copy)
  best = copy / "checkpoints" / "best"
  step = max(best.glob("[0-9]"), key=lambda p: int(p.name))
  f = max((p for p in (step / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  raw = bytearray(f.read_bytes())
  raw[len(raw) // 2] ^= 0x01
  f.write_bytes(bytes(raw))
  with pytest.raises(CheckpointError, match="damaged"):
    runs.load_teacher(copy)


def test_teacher_then_distillation_end_to_end(teachers, distilled):
  meta = runs.restore_run(teachers[0]).metadata
  assert meta["model"] == "itransformer" and "test" in meta and "val" in meta
  assert len(meta["data"]["scaler_mean"]) == 7
  for workdir in distilled.values():
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["test"]["mse"] > 0
    assert [t["model"] for t in saved["teachers"]] == ["itransformer"] * 2
    assert saved["num_regressor_params"] == 2 * (16 * 16 + 16 + 16 * 16 + 16)


def test_cached_teacher_outputs_train_the_same_student(distilled):
  cached, online = (json.loads((distilled[c] / "results.json").read_text()) for c in (True, False))
  assert cached["epochs"] == online["epochs"]
  assert cached["test"]["mse"] == pytest.approx(online["test"]["mse"], rel=1e-4)
  assert cached["best_val"]["mse"] == pytest.approx(online["best_val"]["mse"], rel=1e-4)


@pytest.mark.parametrize("kind", ["teacher", "student", "distill"])
def test_restore_run_rebuilds_every_kind_of_run(kind, teachers, student, distilled):
  # From the best checkpoint alone, the model that gave results.json's test metrics.
  workdir = {"teacher": teachers[0], "student": student, "distill": distilled[True]}[kind]
  restored = runs.restore_run(workdir)
  assert restored.metadata["config"]["kind"] == kind and restored.workdir == str(workdir)
  assert set(restored.variables["params"]) != {"model", "regressors"}  # the model alone
  assert "regressors" not in restored.variables["params"]  # a distilled student drops them
  config = ml_collections.ConfigDict(restored.metadata["config"])
  splits = runs.load_splits(config)
  test = runs.Evaluator(restored.model, config, splits)(restored.variables, "test")
  saved = json.loads((workdir / "results.json").read_text())
  assert test == pytest.approx(saved["test"], rel=1e-6)
  assert restored.metadata["test"] == saved["test"]


def test_load_teacher_is_restore_run():
  assert runs.load_teacher is runs.restore_run and runs.Teacher is runs.Restored


def test_teacher_outputs_over_the_cap_say_so_and_the_teachers_run(teachers, distilled, tmp_path,
                                                                  capsys):
  config = distill_run_config(teachers)
  config.teacher.cache_max_mb = 0
  over = run(config, tmp_path / "kd")
  out = capsys.readouterr().out
  assert "NOTE: the teachers' outputs on the" in out and "--config.teacher.cache_max_mb" in out
  online = json.loads((distilled[False] / "results.json").read_text())
  assert over["test"] == online["test"]  # the run the cache was refused for is the online one
