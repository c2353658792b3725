"""A non-editable install works on its own: wheel -> fresh virtualenv -> run from an empty folder.

The wheel is installed without its dependencies into a new virtualenv whose only other path is
this interpreter's site-packages (jax, flax, ...), so nothing of the checkout (``configs/``,
``experiments/``, the editable install) can be imported by accident.
"""

import json
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args, cwd, **kw):
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TIMEDISTILL_CRASH_AT")}
  out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kw)
  assert out.returncode == 0, f"{args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
  return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """The python of a fresh virtualenv holding the wheel of this checkout."""
  tmp = tmp_path_factory.mktemp("install")
  _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", str(tmp / "dist"), str(ROOT)], cwd=tmp)
  wheel, = (tmp / "dist").glob("timedistill_jax-*.whl")
  _run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], cwd=tmp)
  python = tmp / "venv" / "bin" / "python"
  purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                 cwd=tmp).stdout.strip()
  (Path(purelib) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
  _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
        "--no-index", str(wheel)], cwd=tmp)
  empty = tmp / "empty"
  empty.mkdir()
  return python, empty


def test_the_wheel_is_what_runs(installed):
  python, empty = installed
  where = _run([str(python), "-c", "import timedistill_jax; print(timedistill_jax.__file__)"],
               cwd=empty).stdout.strip()
  assert str(python.parent.parent) in where
  missing = subprocess.run([str(python), "-c", "import configs"], cwd=empty,
                           capture_output=True, text=True)
  assert missing.returncode != 0  # the checkout's configs/ is not what the install uses


def test_command_line_smoke_run(installed):
  python, empty = installed
  _run([str(python), "-m", "timedistill_jax", "--config", "student:dataset=synthetic,smoke=True",
        "--workdir", "W"], cwd=empty)
  results = json.loads((empty / "W" / "results.json").read_text())
  assert results["kind"] == "student" and results["dataset"] == "synthetic"
  assert results["test"]["windows"] > 0


def notebook_cell() -> str:
  """The README's notebook cell, as a user would paste it."""
  text = (ROOT / "README.md").read_text()
  section = text.split("## Distillation from a notebook", 1)[1]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_notebook_cell(installed):
  python, empty = installed
  _run([str(python), "-m", "timedistill_jax", "--config",
        "teacher:dataset=synthetic,model=itransformer,smoke=True", "--workdir", "teacher"],
       cwd=empty)
  cell = notebook_cell()
  assert "dataset=etth1" in cell and '"runs/teacher"' in cell
  # The same cell on the built-in series, with the teacher just trained.
  cell = cell.replace("dataset=etth1", "dataset=synthetic,smoke=True").replace(
      '"runs/teacher"', '"teacher"')
  cell += "\nassert {'loss', 'sup'} <= set(metrics)\nprint('loss', float(metrics['loss']))\n"
  out = _run([str(python), "-c", cell], cwd=empty)
  assert "loss" in out.stdout
