"""Ensembles (timedistill_jax/runs/ensemble.py, members.py): members are every combination of
the lists; each member equals the single run with its settings (seeds, learning rates, alpha x
beta), early stopping freezes a member while the others go on, a killed ensemble resumes to the
same result, and a finished member is a run of its own (restored, used as a teacher)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from timedistill_jax.configs import get_config
from timedistill_jax.errors import ConfigError
from timedistill_jax.runs import ensemble, restore_run

# Short real-data runs: ETTh1, H=24, 10 steps an epoch of a shuffled subset, 3 eval batches.
SHORT = ["--config.train.progress=False", "--config.train.max_steps_per_epoch=10",
         "--config.train.max_eval_batches=3", "--config.train.epochs=8",
         "--config.train.patience=1", "--config.model.d_model=32"]
STUDENT = "student:dataset=etth1,model=dmlp,pred_len=24"
TIMINGS = {"wall_seconds", "seconds", "ms_per_train_step", "inference_ms_per_batch"}


def _cli(config, workdir, *flags, crash_at=None, check=True):
  env = {k: v for k, v in os.environ.items() if k != "TIMEDISTILL_CRASH_AT"}
  if crash_at:
    env["TIMEDISTILL_CRASH_AT"] = crash_at
  out = subprocess.run([sys.executable, "-m", "timedistill_jax", "--config", config,
                        "--workdir", str(workdir), *flags], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  if check:
    assert out.returncode == 0, out.stderr[-3000:]
  return out


def _results(workdir):
  return json.loads((workdir / "results.json").read_text())


def _same_as_single(member, single):
  assert member["best_epoch"] == single["best_epoch"] and member["epochs"] == single["epochs"]
  assert member["test"]["mse"] == pytest.approx(single["test"]["mse"], rel=1e-5)
  assert member["best_val"]["mse"] == pytest.approx(single["best_val"]["mse"], rel=1e-5)


# ---- settings ----------------------------------------------------------------------------------

def test_members_are_every_combination_seeds_outermost():
  config = get_config("distill", "dataset=etth1,teacher=itransformer")
  config.ensemble.seeds, config.ensemble.alpha, config.ensemble.beta = "1,2", "0.5,1", "2"
  config.ensemble.variants = "full,no_period"
  members = ensemble.members(config)
  assert len(members) == 2 * 2 * 1 * 2
  assert [m["seed"] for m in members] == [1] * 4 + [2] * 4
  assert members[1] == {"seed": 1, "lr": 0.01, "alpha": 0.5, "beta": 2.0, "variant": "no_period"}
  single = ensemble.member_config(config, members[1])
  assert (single.seed, single.distill.alpha, single.distill.period_weight) == (1, 0.5, 0.0)
  assert not ensemble.is_ensemble(single)


@pytest.mark.parametrize("overrides, message", [
    (["--config.ensemble.seeds=1,x"], "config.ensemble.seeds must be a comma-separated list"),
    (["--config.ensemble.seeds=1,1"], "config.ensemble.seeds lists a value twice"),
    (["--config.ensemble.lr=0.1,-1"], "config.ensemble.lr must be finite numbers > 0"),
    (["--config.ensemble.alpha=1,2"], "config.ensemble.alpha applies to distillation runs only"),
    (["--config.ensemble.seeds=1,2", "--config.parallel.mode=pmap"],
     "an ensemble runs under --config.parallel.mode=none or shard_map"),
    (["--config.parallel.member_devices=2"], "member_devices > 1 splits an ensemble's members"),
    (["--config.ensemble.seeds=1,2,3", "--config.parallel.mode=shard_map",
      "--config.parallel.member_devices=2"], "3 ensemble members do not divide over"),
])
def test_bad_ensemble_settings_are_one_line(tmp_path, overrides, message):
  out = _cli("student:dataset=synthetic,smoke=True", tmp_path / "run", *overrides, check=False)
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
  assert not (tmp_path / "run").exists()


def test_unknown_variant_names_the_valid_ones():
  config = get_config("distill", "dataset=etth1,teacher=itransformer")
  config.ensemble.variants = "full,no_nothing"
  with pytest.raises(ConfigError, match="unknown config.ensemble.variants 'no_nothing'; valid "
                                        "choices: full, no_period"):
    ensemble.members(config)


# ---- members equal single runs -----------------------------------------------------------------

@pytest.fixture(scope="module")
def seeds_and_rates(tmp_path_factory, request):
  """An ensemble of 2 seeds x 2 learning rates, and the four single runs it stands for."""
  if not os.environ.get("TIMEDISTILL_DATA_DIR"):
    pytest.skip("TIMEDISTILL_DATA_DIR is not set (real ETTh1 needed)")
  root = tmp_path_factory.mktemp("ensemble")
  _cli(STUDENT, root / "ensemble", *SHORT, "--config.ensemble.seeds=1,2",
       "--config.ensemble.lr=0.01,0.003")
  singles = {}
  for seed in (1, 2):
    for lr in (0.01, 0.003):
      workdir = root / f"single_{seed}_{lr}"
      _cli(STUDENT + f",seed={seed}", workdir, *SHORT, f"--config.optim.lr={lr}")
      singles[seed, lr] = _results(workdir)
  return root, singles


def test_seed_and_learning_rate_members_equal_single_runs(seeds_and_rates):
  root, singles = seeds_and_rates
  results = _results(root / "ensemble")
  members = results["members"]
  assert [(m["seed"], m["lr"]) for m in members] == list(singles)
  for member, single in zip(members, singles.values()):
    _same_as_single(member, single)
  # Members stopped after different numbers of epochs: the early ones were frozen meanwhile.
  assert len({m["epochs"] for m in members}) > 1
  assert results["epochs"] == max(m["epochs"] for m in members)
  assert results["test"]["mse"] == pytest.approx(
      sum(m["test"]["mse"] for m in members) / len(members))


def test_a_finished_member_is_a_run_of_its_own(seeds_and_rates):
  root, singles = seeds_and_rates
  member = root / "ensemble" / "members" / "3"
  restored = restore_run(member)
  assert restored.metadata["config"]["seed"] == 2
  assert restored.metadata["config"]["optim"]["lr"] == 0.003
  assert restored.metadata["test"] == _results(member)["test"]
  assert _results(member)["test"]["mse"] == pytest.approx(singles[2, 0.003]["test"]["mse"],
                                                          rel=1e-5)


def test_a_killed_ensemble_resumes_to_the_same_result(seeds_and_rates, tmp_path):
  root, _ = seeds_and_rates
  workdir = tmp_path / "killed"
  flags = (*SHORT, "--config.ensemble.seeds=1,2", "--config.ensemble.lr=0.01,0.003",
           "--config.train.checkpoint_every=4")
  out = _cli(STUDENT, workdir, *flags, crash_at="step:26", check=False)
  assert out.returncode == -signal.SIGKILL
  _cli(STUDENT, workdir, *flags)
  whole, resumed = _results(root / "ensemble"), _results(workdir)
  assert {k: v for k, v in resumed.items() if k not in TIMINGS} == {
      k: v for k, v in whole.items() if k not in TIMINGS}


def test_alpha_beta_members_equal_single_distillations(tmp_path):
  if not os.environ.get("TIMEDISTILL_DATA_DIR"):
    pytest.skip("TIMEDISTILL_DATA_DIR is not set (real ETTh1 needed)")
  # Two teachers trained as an ensemble of seeds; its second member is the teacher below.
  teachers = tmp_path / "teachers"
  _cli("teacher:dataset=etth1,model=itransformer,pred_len=24", teachers, *SHORT[:4],
       "--config.train.epochs=2", "--config.model.d_model=16", "--config.model.d_ff=16",
       "--config.model.e_layers=1", "--config.ensemble.seeds=1,2")
  teacher = teachers / "members" / "1"
  assert restore_run(teacher).metadata["config"]["seed"] == 2
  distill = "distill:dataset=etth1,teacher=itransformer,student=mlp,pred_len=24"
  flags = (*SHORT, f"--config.teacher.workdir={teacher}", "--config.train.epochs=4")
  _cli(distill, tmp_path / "grid", *flags, "--config.ensemble.alpha=0.5,2",
       "--config.ensemble.beta=1")
  members = _results(tmp_path / "grid")["members"]
  assert [(m["alpha"], m["beta"]) for m in members] == [(0.5, 1.0), (2.0, 1.0)]
  for member in members:
    single = tmp_path / f"single_{member['alpha']}"
    _cli(distill, single, *flags, f"--config.distill.alpha={member['alpha']}",
         "--config.distill.beta=1")
    _same_as_single(member, _results(single))
