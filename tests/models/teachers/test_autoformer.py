"""Autoformer: parameter count at the ETTh1 shape (its features with more variates than
d_model are checked with the distillation step, in tests/test_steps.py)."""

import pytest

from tests.helpers import etth1_model
from timedistill_jax import models


# sum(p.numel()) of the TimeDistill reference model, measured with torch 2.13: the same
# (docs/method.md "Teacher settings" for the settings).
@pytest.mark.parametrize("pred_len, count", [(96, 10_535_943), (336, 10_535_943)])
def test_etth1_parameter_count(pred_len, count):
  _, variables, _ = etth1_model("autoformer", pred_len, d_model=512, d_ff=2048, factor=3)
  assert models.count_params(variables) == count
