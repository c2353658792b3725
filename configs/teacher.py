r"""Trains a teacher with the reference's per-dataset settings (docs/method.md, "Teacher settings").

  python -m timedistill_jax \
      --config configs/teacher.py:dataset=etth1,model=itransformer,pred_len=96 \
      --workdir runs/etth1_itransformer_96

Arguments: dataset, model (a registered teacher), pred_len, seed, smoke. The checkpoint in
``<workdir>/checkpoints/best`` carries everything needed to rebuild and use the teacher alone
(model, hyperparameters, data, L/H, scaler statistics, validation and test metrics); pass the
workdir to configs/distill.py as ``--config.teacher.workdir``.

Expected: ETTh1 H=96 iTransformer, test MSE about 0.394 (the reference code on this CPU,
docs/pytorch.md), in about a minute on 2 cores.
"""

from timedistill_jax.configs.teacher import get_config  # noqa: F401
