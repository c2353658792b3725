r"""Trains a teacher with the reference's per-dataset settings (docs/method.md, "Teacher settings").

  python -m timedistill_jax \
      --config teacher:dataset=etth1,model=itransformer,pred_len=96 \
      --workdir runs/etth1_itransformer_96

Arguments: dataset, model (a registered teacher), pred_len, seed, smoke. The checkpoint in
``<workdir>/checkpoints/best`` carries everything needed to rebuild and use the teacher alone
(model, hyperparameters, data, L/H, scaler statistics, validation and test metrics); pass the
workdir to the distill config as ``--config.teacher.workdir``.

Expected: ETTh1 H=96 iTransformer, test MSE about 0.394 (the reference code on this CPU,
docs/pytorch.md), in about a minute on 2 cores.
"""

import ml_collections

from timedistill_jax.configs import common
from timedistill_jax.data.datasets import dataset_name


def get_config(arg=None):
  a = common.parse_arg(arg, dataset="etth1", model="itransformer", pred_len=96, seed=2021,
                       smoke=False)
  a.dataset = dataset_name(a.dataset)  # ETTh1, ECL, electricity, solar_AL, ...
  common.check_name("dataset", a.dataset, common.DATASETS)
  common.check_name("teacher", a.model, common.TEACHER_MODEL)
  train = dict(batch_size=32, lr=1e-4, epochs=10, patience=5)
  train.update(common.TEACHER_TRAIN.get(a.model, {}).get(a.dataset, {}))

  config = ml_collections.ConfigDict()
  config.kind = "teacher"
  config.seed = a.seed
  config.smoke = a.smoke
  config.data = common.data_config(a.dataset, a.pred_len, train["batch_size"])
  config.data.label_len = train.get("label_len", 48)
  config.model = ml_collections.ConfigDict(
      dict(name=a.model, **common.TEACHER_DEFAULTS.get(a.model, {}),
           **common.TEACHER_MODEL[a.model][a.dataset]))
  config.optim = ml_collections.ConfigDict(
      dict(lr=train["lr"], schedule="type1", weight_decay=0.0))
  config.parallel = common.parallel_config()
  config.ensemble = common.ensemble_config()
  config.train = common.train_config(epochs=train["epochs"], patience=train["patience"])
  if a.smoke:
    common.apply_smoke(config)
  return config
