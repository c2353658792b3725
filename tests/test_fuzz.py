"""Fuzzing the inputs a user controls: malformed CSV files and config values.

Every case must end in the data (a loaded dataset) or in our own ``TimeDistillError`` with a
message, never in a raw exception from pandas, NumPy or JAX.
"""

import ml_collections
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timedistill_jax.configs import distill, student, teacher
from timedistill_jax.data import load_dataset
from timedistill_jax.errors import TimeDistillError
from timedistill_jax.validation import validate_config

ROWS = 40
MUTATIONS = ("none", "nan", "inf", "text", "empty_cell", "drop_date", "duplicate_date",
             "unsorted", "bad_date", "short", "extra_comma", "missing_cell", "header_only",
             "binary", "no_target", "huge")


def _csv(mutation: str, row: int, col: int, token: str) -> bytes:
  dates = [f"2021-01-{1 + h // 24:02d} {h % 24:02d}:00:00" for h in range(ROWS)]
  cells = [[f"{np.sin(h + c):.4f}" for c in range(3)] for h in range(ROWS)]
  header = ["date", "a", "b", "OT"]
  if mutation in ("nan", "inf", "text", "empty_cell", "huge"):
    # A text token gets an "x" so that it never reads as a number (hypothesis found "0").
    cells[row][col] = {"nan": "nan", "inf": "-inf", "text": token + "x", "empty_cell": "",
                       "huge": "1e400"}[mutation]
  elif mutation == "duplicate_date":
    dates[row] = dates[row - 1] if row else dates[1]
  elif mutation == "unsorted":
    dates[row], dates[(row + 7) % ROWS] = dates[(row + 7) % ROWS], dates[row]
  elif mutation == "bad_date":
    dates[row] = token or "yesterday"
  elif mutation == "no_target":
    header[-1] = "target"
  lines = [",".join(header)] + [",".join([d] + c) for d, c in zip(dates, cells)]
  if mutation == "drop_date":
    lines = [",".join(line.split(",")[1:]) for line in lines]
  elif mutation == "short":
    lines = lines[:row % 5 + 1]
  elif mutation == "extra_comma":
    lines[row + 1] += ",7"
  elif mutation == "missing_cell":
    lines[row + 1] = lines[row + 1].rsplit(",", 1)[0]
  elif mutation == "header_only":
    lines = lines[:1]
  data = "\n".join(lines).encode()
  if mutation == "binary":
    data = bytes((b * 7 + row) % 256 for b in data[:200])
  return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(mutation=st.sampled_from(MUTATIONS), row=st.integers(0, ROWS - 1),
       col=st.integers(0, 2), token=st.text(max_size=6),
       features=st.sampled_from(["M", "S", "MS"]))
def test_malformed_csv_ends_in_our_error(tmp_path_factory, mutation, row, col, token, features):
  path = tmp_path_factory.mktemp("csv") / "mine.csv"
  path.write_bytes(_csv(mutation, row, col, token))
  try:
    splits = load_dataset("custom", path=str(path), seq_len=4, label_len=2, pred_len=2,
                          features=features)
  except TimeDistillError as e:
    assert str(e)
    return
  # Only the columns the model reads are checked: with features='S' that is the target alone.
  untouched = features == "S" and col != 2 and mutation in (
      "nan", "inf", "text", "empty_cell", "huge")
  assert mutation in ("none", "extra_comma") or untouched, mutation
  assert np.isfinite(splits.train.data).all()


BAD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                       st.text(max_size=5), st.sampled_from(["dmlp", "mlp", "M", "h", "type1"]))
KEYS = [("data", "name"), ("data", "seq_len"), ("data", "label_len"), ("data", "pred_len"),
        ("data", "batch_size"), ("data", "eval_batch_size"), ("data", "features"),
        ("data", "freq"), ("data", "split"), ("data", "val_fraction"), ("model", "name"),
        ("model", "d_model"), ("model", "norm"),
        ("optim", "lr"), ("optim", "schedule"), ("optim", "weight_decay"), ("train", "epochs"),
        ("train", "patience"), ("train", "log_every"), ("train", "checkpoint_every"),
        ("parallel", "mode"), ("distill", "alpha"), ("distill", "beta"), ("kind", None)]


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["student", "teacher", "distill"]),
       changes=st.lists(st.tuples(st.sampled_from(KEYS), BAD_VALUES), min_size=1, max_size=3))
def test_bad_config_values_end_in_our_error(kind, changes):
  config = {"student": student, "teacher": teacher, "distill": distill}[kind].get_config(
      "dataset=synthetic").to_dict()
  if kind == "distill":
    config["teacher"]["workdir"] = "runs/t"
  for (group, key), value in changes:
    if key is None:
      config[group] = value
    elif group in config:
      config[group][key] = value
  try:
    validate_config(ml_collections.ConfigDict(config))
  except TimeDistillError as e:
    assert str(e)
