"""TimesNet: parameter count at the ETTh1 shape."""

import pytest

from tests.helpers import etth1_model
from timedistill_jax import models


# sum(p.numel()) of the TimeDistill reference model, measured with torch 2.13: the same
# (docs/method.md "Teacher settings" for the settings).
@pytest.mark.parametrize("pred_len, count", [(96, 1_175_191), (336, 1_348_231)])
def test_etth1_parameter_count(pred_len, count):
  _, variables, _ = etth1_model("timesnet", pred_len, d_model=16, d_ff=32)
  assert models.count_params(variables) == count
