"""Data parallelism: pmap and shard_map equal the single-device result, on 4 fake CPU devices
and across two real processes. Each case runs in a subprocess, so the device flags take effect
before JAX starts."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from timedistill_jax.configs import teacher as teacher_config
from timedistill_jax.run import run

ROOT = Path(__file__).resolve().parent.parent
WORKER = str(ROOT / "tests" / "parallel_worker.py")
FOUR_DEVICES = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _check(out):
  assert out.returncode == 0, out.stderr[-3000:]


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
  """The worker's loops on 4 fake devices under each mode: none (one device), pmap, shard_map."""
  out = tmp_path_factory.mktemp("steps") / "steps.npz"
  _check(subprocess.run([sys.executable, WORKER, "steps", str(out)], env=FOUR_DEVICES,
                        capture_output=True, text=True, timeout=600))
  return np.load(out)


KEYS = {f"{loop}_{what}" for loop in ("online", "cached", "plain")
        for what in ("losses", "params")} | {"test"}


def test_pmap_and_shard_map_equal_one_device_on_four_devices(steps):
  # Three steps in one call of each loop the trainer runs (distillation with the teacher run
  # and cached, supervised training), then a whole test split evaluated in one call. The last
  # global batch has 5 real rows of 8, spread 2/2/1/0 over the devices, and still matches.
  for mode in ("pmap", "shard_map"):
    for key in KEYS:
      np.testing.assert_allclose(steps[f"{mode}_{key}"], steps[f"none_{key}"], rtol=1e-5,
                                 atol=1e-5, err_msg=f"{mode} {key}")
  assert "does not divide over 4 devices" in str(steps["refused"])


def test_two_processes_agree_with_one(tmp_path, steps):
  # pmap over the devices of two processes (one CPU device each) against one device.
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, WORKER, "process", str(i), "2", str(port),
                             str(tmp_path / f"p{i}.npz")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
  two = np.load(tmp_path / "p0.npz")
  assert set(two.files) == KEYS
  for key in two.files:
    np.testing.assert_allclose(two[key], steps[f"none_{key}"], rtol=1e-5, atol=1e-5,
                               err_msg=key)


TINY = ["--config.data.seq_len=48", "--config.data.label_len=8", "--config.train.progress=False"]


def _cli(config, workdir, *extra, env=FOUR_DEVICES):
  out = subprocess.run([sys.executable, "-m", "timedistill_jax", "--config", config,
                        "--workdir", str(workdir), *TINY, *extra], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  _check(out)
  return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  """A tiny iTransformer trained on one device (checkpoints are mode-free)."""
  config = teacher_config.get_config("dataset=synthetic,model=itransformer,pred_len=12,smoke=True")
  config.data.seq_len, config.data.label_len = 48, 8
  config.model.update(dict(d_model=16, d_ff=16, n_heads=2, e_layers=1))
  config.train.progress = False
  workdir = tmp_path_factory.mktemp("teacher") / "teacher"
  run(config, workdir)
  return workdir


DISTILL = "configs/distill.py:dataset=synthetic,teacher=itransformer,pred_len=12,smoke=True"


@pytest.mark.parametrize("mode", ["pmap"])  # shard_map: same body, checked step by step above
def test_cli_distillation_under_a_parallel_mode_matches_one_device(tmp_path, mode, teacher):
  # A teacher trained on one device serves a student on four.
  common = [f"--config.teacher.workdir={teacher}", "--config.model.d_model=16"]
  one = _cli(DISTILL, tmp_path / "one", *common)
  four = _cli(DISTILL, tmp_path / mode, *common, f"--config.parallel.mode={mode}")
  assert four["parallel"] == {"mode": mode, "devices": 4, "processes": 1}
  assert four["test"]["windows"] == one["test"]["windows"]
  assert abs(four["test"]["mse"] - one["test"]["mse"]) < 1e-4


def test_ensemble_over_a_2d_mesh_matches_one_device(tmp_path, teacher):
  # 4 members of a distillation (2 seeds x 2 alphas, the teacher run on every batch) on a
  # (members 2) x (data 2) mesh of 4 devices: each device 2 members and half the batch.
  common = [f"--config.teacher.workdir={teacher}", "--config.model.d_model=16",
            "--config.teacher.cache=False", "--config.ensemble.seeds=1,2",
            "--config.ensemble.alpha=0.5,1"]
  one = _cli(DISTILL, tmp_path / "one", *common)
  mesh = _cli(DISTILL, tmp_path / "mesh", *common, "--config.parallel.mode=shard_map",
              "--config.parallel.member_devices=2")
  assert mesh["parallel"] == {"mode": "shard_map", "devices": 4, "processes": 1}
  assert len(mesh["members"]) == len(one["members"]) == 4
  for a, b in zip(one["members"], mesh["members"]):
    assert (a["seed"], a["alpha"], a["best_epoch"]) == (b["seed"], b["alpha"], b["best_epoch"])
    assert b["test"]["mse"] == pytest.approx(a["test"]["mse"], rel=1e-5)
