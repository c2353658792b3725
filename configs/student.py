r"""The MLP student alone (the paper's "MLP" baseline); the settings are in the package.

  python -m timedistill_jax --config configs/student.py:dataset=etth1,pred_len=96 \
      --workdir runs/etth1_dmlp_96

Arguments and the expected result: ``timedistill_jax/configs/student.py``.
"""

from timedistill_jax.configs.student import get_config  # noqa: F401
