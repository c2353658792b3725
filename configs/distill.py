r"""A trained teacher distilled into the MLP student; the settings are in the package.

  python -m timedistill_jax \
      --config configs/distill.py:dataset=etth1,teacher=itransformer,pred_len=96 \
      --config.teacher.workdir=runs/etth1_itransformer_96 --workdir runs/etth1_kd_96

Arguments, several teachers, PyTorch teachers and the expected result:
``timedistill_jax/configs/distill.py``.
"""

from timedistill_jax.configs.distill import get_config  # noqa: F401
