r"""Distils a trained teacher into the MLP student with the TimeDistill loss.

  python -m timedistill_jax \
      --config configs/distill.py:dataset=etth1,teacher=itransformer,pred_len=96 \
      --config.teacher.workdir=runs/etth1_itransformer_96 --workdir runs/etth1_kd_96

Arguments: dataset, teacher (the teacher's model name, checked against its checkpoint),
pred_len, student (dmlp or mlp), seed, smoke. alpha and beta default to the reference's tuned
values for the dataset and teacher (docs/method.md, "Training settings"; 1 / 1 for teachers
without tuned scripts);
set ``--config.distill.alpha`` / ``beta`` to change them. Several teachers: a comma-separated
list of workdirs in ``--config.teacher.workdir``; each gets its own regressor and the
distillation terms are averaged over teachers.

A teacher trained by the reference PyTorch code (TimeDistill or Time-Series-Library) is used
without retraining: ``--config.teacher.torch_checkpoint=.../checkpoint.pth`` (needs the torch
extra, ``pip install -e .[torch]``). Its architecture is ``config.teacher.model``, the
reference's settings for the dataset (configs/common.py); a teacher trained with others needs
them set, e.g. ``--config.teacher.model.d_model=128``, and a file that does not fit is one
CheckpointError naming the key and shapes at fault.

  python -m timedistill_jax \
      --config configs/distill.py:dataset=etth1,teacher=itransformer,student=mlp,pred_len=96 \
      --config.teacher.torch_checkpoint=checkpoints/<setting>/checkpoint.pth --workdir runs/kd

A teacher trained for another dataset, horizon, input length or channel count is refused before
anything compiles. ``--config.teacher.cache=False`` runs the teacher on every batch (the
reference's way) instead of once per training window.

Expected: ETTh1 H=96 with an iTransformer teacher and alpha = beta = 1, test MSE about 0.371
(DMLP) / 0.370 (plain MLP) (docs/pytorch.md, "The reference code on this machine").
"""

from timedistill_jax.configs.distill import get_config  # noqa: F401
