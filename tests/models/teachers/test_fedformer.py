"""FEDformer: parameter count at the ETTh1 shape and its frequency modes (its conversion and its
features with more variates than d_model are checked in tests/test_convert.py and
tests/test_steps.py)."""

import pytest

from tests.helpers import L, build, etth1_model
from timedistill_jax import models


# sum(p.numel()) of the TimeDistill reference model, measured with torch 2.13: the same
# (docs/method.md "Teacher settings" for the settings).
@pytest.mark.parametrize("pred_len, count", [(96, 16_827_399), (336, 16_827_399)])
def test_etth1_parameter_count(pred_len, count):
  _, variables, _ = etth1_model("fedformer", pred_len, d_model=512, d_ff=2048)
  assert models.count_params(variables) == count


def test_modes_seeded_and_overridable():
  model = build("fedformer", mode_seed=7)
  enc, dec, cross_q, cross_kv = model.indices()
  assert len(enc) == 4 and all(i < L // 2 for i in enc)
  assert model.indices() == build("fedformer", mode_seed=7).indices()
  given = ((0, 1, 2, 3), (0, 1, 2, 3), (0, 1, 2, 3), (4, 5, 6, 7))
  assert build("fedformer", mode_indices=given).indices() == given
