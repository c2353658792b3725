"""TimeMixer: parameter count and feature width at the ETTh1 shape, and its calendar tiling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import etth1_feature_width, etth1_model
from timedistill_jax import models

ETTH1 = dict(e_layers=2, d_model=16, d_ff=32, down_sampling_layers=3)  # docs/method.md
UNUSED_IN_REFERENCE = 64  # the reference's two unused per-block LayerNorms, 2 * 32


# sum(p.numel()) of the TimeDistill reference model, measured with torch 2.13.
@pytest.mark.parametrize("pred_len, ours, reference", [
    (96, 3_201_673, 3_201_737), (336, 3_526_633, 3_526_697)])
def test_etth1_parameter_count(pred_len, ours, reference):
  _, variables, _ = etth1_model("timemixer", pred_len, **ETTH1)
  assert models.count_params(variables) == ours
  assert ours + UNUSED_IN_REFERENCE == reference


def test_feature_width_at_l720():
  assert etth1_feature_width("timemixer", **ETTH1) == 96  # the horizon


def test_calendar_tiling_follows_reference():
  # Channel-independent rows are b * C + c, the reference tiles x_mark by C: row r gets the
  # calendar features of sample r mod B. With B = 2 and C = 2, sample 1's channel 0 (row 2)
  # reads sample 0's calendar features: changing sample 0's marks moves sample 1's forecast.
  model = models.get_model_class("timemixer")(seq_len=16, label_len=0, pred_len=4, enc_in=2,
                                                d_model=4, d_ff=8, e_layers=1,
                                                down_sampling_layers=1, moving_avg=3)
  x = jnp.ones((2, 16, 2)) + jnp.arange(16.0)[None, :, None]
  marks = jnp.zeros((2, 16, 3))
  variables = model.init(jax.random.key(0), x, marks)
  base, _ = model.apply(variables, x, marks)
  moved, _ = model.apply(variables, x, marks.at[0].set(1.0))
  assert not np.allclose(base[1, :, 0], moved[1, :, 0])
