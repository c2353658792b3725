"""examples/quickstart.ipynb runs top to bottom (its code cells, in order, in one namespace, as
a kernel would), on ETTh1 when the data folder has it, else on the synthetic series."""

import json
import os
import subprocess
import sys

from tests.helpers import ROOT

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path):
  notebook = json.loads(NOTEBOOK.read_text())
  cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
  assert all(not c["outputs"] and c["execution_count"] is None for c in cells)  # none committed
  code = "\n\n".join("".join(c["source"]) for c in cells)
  code += "\nassert float(np.abs(served - future[columns].to_numpy()).max()) < 1e-4\n"
  env = os.environ | {"QUICKSTART_DIR": str(tmp_path), "MPLBACKEND": "Agg"}
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "distilled MLP" in out.stdout and "largest difference" in out.stdout
  assert (tmp_path / "forecast.png").stat().st_size > 1000
  assert (tmp_path / "exported" / "model.jaxexport").exists()
