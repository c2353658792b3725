r"""Distils a trained teacher into the MLP student with the TimeDistill loss.

  python -m timedistill_jax \
      --config distill:dataset=etth1,teacher=itransformer,pred_len=96 \
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
reference's settings for the dataset (``common.py`` beside this file); a teacher trained with
others needs them set, e.g. ``--config.teacher.model.d_model=128``, and a file that does not fit
is one CheckpointError naming the key and shapes at fault.

  python -m timedistill_jax \
      --config distill:dataset=etth1,teacher=itransformer,student=mlp,pred_len=96 \
      --config.teacher.torch_checkpoint=checkpoints/<setting>/checkpoint.pth --workdir runs/kd

A teacher trained for another dataset, horizon, input length or channel count is refused before
anything compiles. ``--config.teacher.cache=False`` runs the teacher on every batch (the
reference's way) instead of once per training window.

Expected: ETTh1 H=96 with an iTransformer teacher and alpha = beta = 1, test MSE about 0.371
(DMLP) / 0.370 (plain MLP) (docs/pytorch.md, "The reference code on this machine").
"""

import ml_collections

from timedistill_jax.configs import common
from timedistill_jax.data.datasets import dataset_name


def get_config(arg=None):
  a = common.parse_arg(arg, dataset="etth1", teacher="itransformer", pred_len=96,
                       student="dmlp", seed=2021, smoke=False)
  a.dataset = dataset_name(a.dataset)  # ETTh1, ECL, electricity, solar_AL, ...
  common.check_name("dataset", a.dataset, common.DATASETS)
  common.check_name("teacher", a.teacher, common.TEACHERS)
  s = common.STUDENT[a.dataset]
  alpha, beta = common.alpha_beta(a.dataset, a.teacher)

  config = ml_collections.ConfigDict()
  config.kind = "distill"
  config.seed = a.seed
  config.smoke = a.smoke
  config.data = common.data_config(a.dataset, a.pred_len, s["batch_size"])
  # The teacher reads y_mark of length label_len + H (the student ignores it).
  config.data.label_len = common.teacher_label_len(a.teacher, a.dataset)
  config.model = ml_collections.ConfigDict(dict(name=a.student, d_model=s["d_model"],
                                                norm=s["norm"], moving_avg=25))
  config.teacher = ml_collections.ConfigDict(dict(
      name=a.teacher,
      workdir="",  # the teacher run's workdir; several: comma-separated
      # A reference PyTorch teacher (.pth), with the architecture in ``model``; several:
      # comma-separated. May be combined with ``workdir`` teachers.
      torch_checkpoint="",
      model=ml_collections.ConfigDict(dict(
          **common.TEACHER_DEFAULTS.get(a.teacher, {}),
          **common.TEACHER_MODEL[a.teacher].get(a.dataset, {}))),
      cache=True,  # compute the frozen teacher's outputs once per training window
      cache_max_mb=2048,  # ... when they fit in this much host memory
  ))
  config.distill = ml_collections.ConfigDict(dict(
      alpha=float(alpha), beta=float(beta), temperature=0.5, num_scales=3,
      # 1 in the method; 0 drops L_sup / both L_scale / both L_period (configs/sweeps.py ablation)
      sup_weight=1.0, scale_weight=1.0, period_weight=1.0))
  config.optim = ml_collections.ConfigDict(dict(lr=0.01, schedule="type1", weight_decay=0.0))
  config.parallel = common.parallel_config()
  config.ensemble = common.ensemble_config()
  config.train = common.train_config(epochs=s["epochs"], patience=5)
  if a.smoke:
    common.apply_smoke(config)
  return config
