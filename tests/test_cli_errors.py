"""Command-line mistakes end in one line naming the problem and the fix, with exit status 2."""

import subprocess
import sys

import pytest

CASES = [
    (["--config", "nofile.py:dataset=etth1"], "no config file 'nofile.py'"),
    (["--config", "nofile.py:dataset=etth1", "--config.optim.lr=0.1"],
     "no config file 'nofile.py'"),
    (["--config=nofile.py", "--config.train.epochs=3"], "no config file 'nofile.py'"),
    (["--config", "studnet:dataset=etth1"], "no config file 'studnet'"),
    (["--config", "student:dataset=synthetic", "--config.optim.learning_rate=0.1"],
     "unknown config key 'optim.learning_rate'; optim has: lr, schedule, weight_decay"),
    (["--config", "student:dataset=synthetic", "--config.nogroup.x=1"],
     "unknown config key 'nogroup.x'; the config has: data, ensemble, kind, model, optim"),
    (["--config", "student:dataset=synthetic", "--config.train.epocs=3"],
     'Did you mean "epochs"'),
]


@pytest.mark.parametrize("args,expected", CASES)
def test_one_line_and_exit_2(tmp_path, args, expected):
  out = subprocess.run([sys.executable, "-m", "timedistill_jax", *args, "--workdir", "W"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert out.returncode == 2, out.stderr
  first, *rest = out.stderr.strip().splitlines()
  assert first.startswith("error: ") and expected in first, out.stderr
  assert all(line.startswith("usage: ") for line in rest), out.stderr  # no traceback
  assert not (tmp_path / "W").exists()
