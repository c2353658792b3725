"""MICN: parameter count at the ETTh1 shape."""

import pytest

from tests.helpers import etth1_model
from timedistill_jax import models

# The reference builds a time-feature Linear (4 x d_model for freq 'h') that its forward never
# calls; the Flax model has none.
UNUSED_IN_REFERENCE = 4 * 512


# sum(p.numel()) of the TimeDistill reference model, measured with torch 2.13 (docs/method.md
# "Teacher settings" for the settings).
@pytest.mark.parametrize("pred_len, ours, reference", [
    (96, 49_113_703, 49_115_751), (336, 58_461_783, 58_463_831)])
def test_etth1_parameter_count(pred_len, ours, reference):
  _, variables, _ = etth1_model("micn", pred_len, label_len=96, d_model=512)
  assert models.count_params(variables) == ours
  assert ours + UNUSED_IN_REFERENCE == reference
