r"""A teacher with the reference's per-dataset settings; the settings are in the package.

  python -m timedistill_jax \
      --config configs/teacher.py:dataset=etth1,model=itransformer,pred_len=96 \
      --workdir runs/etth1_itransformer_96

Arguments and the expected result: ``timedistill_jax/configs/teacher.py``.
"""

from timedistill_jax.configs.teacher import get_config  # noqa: F401
