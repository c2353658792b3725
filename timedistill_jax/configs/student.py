r"""Trains the MLP student without distillation (the paper's "MLP" baseline).

Run (the reference settings of docs/method.md, "Training settings"; about a minute on 2 CPU cores):

  python -m timedistill_jax --config student:dataset=etth1,pred_len=96 \
      --workdir runs/etth1_dmlp_96

Arguments (comma-separated key=value): dataset (etth1, etth2, ettm1, ettm2, weather, ecl,
traffic, solar, synthetic, custom), pred_len (96/192/336/720), model (dmlp or mlp), seed,
smoke (True: a few steps, for checking a set-up). Anything else with ``--config.a.b=value``.

Expected (3-seed mean, this project's CPU runs): ETTh1 H=96, test MSE about 0.415 for the DMLP
and 0.397 for the plain MLP (docs/pytorch.md, "The reference code on this machine").
"""

import ml_collections

from timedistill_jax.configs import common
from timedistill_jax.data.datasets import dataset_name


def get_config(arg=None):
  a = common.parse_arg(arg, dataset="etth1", pred_len=96, model="dmlp", seed=2021, smoke=False)
  a.dataset = dataset_name(a.dataset)  # ETTh1, ECL, electricity, solar_AL, ...
  common.check_name("dataset", a.dataset, common.DATASETS)
  s = common.STUDENT[a.dataset]

  config = ml_collections.ConfigDict()
  config.kind = "student"
  config.seed = a.seed
  config.smoke = a.smoke
  config.data = common.data_config(a.dataset, a.pred_len, s["batch_size"])
  config.model = ml_collections.ConfigDict(dict(
      name=a.model, d_model=s["d_model"], norm=s["norm"], moving_avg=25))
  config.optim = ml_collections.ConfigDict(dict(lr=0.01, schedule="type1", weight_decay=0.0))
  config.parallel = common.parallel_config()
  config.ensemble = common.ensemble_config()
  config.train = common.train_config(epochs=s["epochs"], patience=5)
  if a.smoke:
    common.apply_smoke(config)
  return config
