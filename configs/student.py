r"""Trains the MLP student without distillation (the paper's "MLP" baseline).

Run (the reference settings of docs/method.md, "Training settings"; about a minute on 2 CPU cores):

  python -m timedistill_jax --config configs/student.py:dataset=etth1,pred_len=96 \
      --workdir runs/etth1_dmlp_96

Arguments (comma-separated key=value): dataset (etth1, etth2, ettm1, ettm2, weather, ecl,
traffic, solar, synthetic, custom), pred_len (96/192/336/720), model (dmlp or mlp), seed,
smoke (True: a few steps, for checking a set-up). Anything else with ``--config.a.b=value``.

Expected (3-seed mean, this project's CPU runs): ETTh1 H=96, test MSE about 0.415 for the DMLP
and 0.397 for the plain MLP (docs/pytorch.md, "The reference code on this machine").
"""

from timedistill_jax.configs.student import get_config  # noqa: F401
