"""PatchTST: parameter count and feature width at the ETTh1 shape."""

import pytest

from tests.helpers import etth1_feature_width, etth1_model
from timedistill_jax import models

ETTH1 = dict(e_layers=1, n_heads=16, d_model=512, d_ff=2048)  # docs/method.md "Teacher settings"


# sum(p.numel()) of the TimeDistill reference model, measured with torch 2.13: the same.
@pytest.mark.parametrize("pred_len, count", [(96, 7_585_376), (336, 18_644_816)])
def test_etth1_parameter_count(pred_len, count):
  _, variables, _ = etth1_model("patchtst", pred_len, **ETTH1)
  assert models.count_params(variables) == count


def test_feature_width_at_l720():
  assert etth1_feature_width("patchtst", **ETTH1) == 512 * 90  # d_model * int((720 - 16) / 8 + 2)
