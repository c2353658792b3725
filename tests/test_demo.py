"""`make demo` as a user runs it, and the README's notebook cell."""

import os
import re
import subprocess
import sys
from pathlib import Path

from timedistill_jax.configs import teacher as teacher_config
from timedistill_jax.run import run

ROOT = Path(__file__).resolve().parent.parent


def test_demo_without_data_says_so_and_uses_the_synthetic_series(tmp_path):
  env = os.environ | {"TIMEDISTILL_DATA_DIR": str(tmp_path / "nothing_here"),
                      "TIMEDISTILL_DATA_URL": "http://127.0.0.1:9/"}  # nothing listens there
  out = subprocess.run(
      [sys.executable, "-m", "timedistill_jax.demo", "--smoke", "--workdir", str(tmp_path / "d")],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  notes = [line for line in out.stdout.splitlines() if line.startswith("NOTE:")]
  assert len(notes) == 1 and "synthetic" in notes[0] and "etth1" in notes[0]
  table = (tmp_path / "d" / "summary.md").read_text()
  for label in ("teacher (iTransformer)", "| MLP |", "MLP + TimeDistill"):
    assert label in table
  assert "| MLP | " in out.stdout  # the table is printed too


def test_readme_notebook_cell_runs(tmp_path, data_dir, monkeypatch):
  teacher_dir = tmp_path / "runs" / "teacher"  # the path the README cell uses
  config = teacher_config.get_config("dataset=etth1,model=itransformer,pred_len=96,smoke=True")
  config.train.progress = False
  run(config, teacher_dir)
  readme = (ROOT / "README.md").read_text()
  section = readme.split("## Distillation from a notebook", 1)[1]
  cell = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(cell, "README.md", "exec"), namespace)  # noqa: S102
  metrics = namespace["metrics"]
  assert set(metrics) == {"loss", "sup", "pred_scale", "pred_period", "feat_scale",
                          "feat_period"}
