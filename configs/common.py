"""Tables shared by every config: datasets, per-dataset student settings, teacher settings.

Numbers from the reference code (PAPER.md s.2.3, 2.4 and 9): the run scripts of
LingFengGold/TimeDistill and its ``config.json``.
"""

import ml_collections

from timedistill_jax.errors import unknown_name

# Per-dataset student settings (PAPER.md s.2.3): norm, hidden width D, epoch budget, batch size.
STUDENT = {
    "etth1": dict(norm="non-stationary", d_model=512, epochs=100, batch_size=32),
    "etth2": dict(norm="non-stationary", d_model=512, epochs=100, batch_size=32),
    "ettm1": dict(norm="non-stationary", d_model=512, epochs=100, batch_size=32),
    "ettm2": dict(norm="non-stationary", d_model=512, epochs=100, batch_size=32),
    "weather": dict(norm="non-stationary", d_model=512, epochs=100, batch_size=32),
    "ecl": dict(norm="non-stationary", d_model=512, epochs=30, batch_size=32),
    "traffic": dict(norm="revin", d_model=1024, epochs=10, batch_size=8),
    "solar": dict(norm="non-stationary", d_model=512, epochs=30, batch_size=32),
    # Not in the paper: the built-in series (demo, smoke runs, tests) and any TSLib-layout CSV.
    "synthetic": dict(norm="non-stationary", d_model=512, epochs=100, batch_size=32),
    "custom": dict(norm="non-stationary", d_model=512, epochs=100, batch_size=32),
}
DATASETS = tuple(STUDENT)
HORIZONS = (96, 192, 336, 720)
TEACHERS = ("itransformer", "moderntcn", "timemixer", "patchtst", "micn", "fedformer",
            "timesnet", "autoformer")

# alpha / beta of the distillation loss per dataset and teacher (PAPER.md s.2.3): the tuned
# scripts exist for iTransformer and ModernTCN; every other teacher uses the generic
# ``train_student.sh`` value alpha = beta = 1.
ALPHA_BETA = {
    "itransformer": {
        "ecl": (0.1, 0.5), "etth1": (2, 2), "etth2": (1, 0.5), "ettm1": (1, 1),
        "ettm2": (1, 0.1), "solar": (0.1, 1), "traffic": (0.5, 0.5), "weather": (0.1, 0.1)},
    "moderntcn": {
        "ecl": (0.1, 0.5), "etth1": (2, 2), "etth2": (2, 0.5), "ettm1": (2, 0.1),
        "ettm2": (2, 0.5), "solar": (0.1, 2), "traffic": (0.1, 0.1), "weather": (0.5, 2)},
}
DEFAULT_ALPHA_BETA = (1.0, 1.0)

# Teacher architecture per dataset (PAPER.md s.9) and training settings (s.2.4).
TEACHER_MODEL = {
    "itransformer": {
        "etth1": dict(e_layers=2, d_model=256, d_ff=256),
        "etth2": dict(e_layers=2, d_model=128, d_ff=128),
        "ettm1": dict(e_layers=2, d_model=128, d_ff=128),
        "ettm2": dict(e_layers=2, d_model=128, d_ff=128),
        "weather": dict(e_layers=3, d_model=512, d_ff=512),
        "ecl": dict(e_layers=3, d_model=512, d_ff=512),
        "traffic": dict(e_layers=4, d_model=512, d_ff=512),
        "solar": dict(e_layers=2, d_model=512, d_ff=512),
        "synthetic": dict(e_layers=2, d_model=256, d_ff=256),
        "custom": dict(e_layers=2, d_model=256, d_ff=256),
    },
}
# Teacher training: lr 1e-4, batch 32, 10 epochs, patience 5, type1, unless stated here.
TEACHER_TRAIN = {
    "itransformer": {
        "ecl": dict(batch_size=16, lr=5e-4),
        "solar": dict(lr=5e-4),
        "traffic": dict(batch_size=16, lr=1e-3),
    },
}


# Settings every dataset shares (TSLib command-line defaults unless the scripts say otherwise).
TEACHER_DEFAULTS = {
    "itransformer": dict(n_heads=8, dropout=0.1, activation="gelu"),
}


def check_name(kind: str, name: str, choices) -> None:
  if name not in choices:
    raise unknown_name(kind, name, choices)


def alpha_beta(dataset: str, teacher: str) -> tuple:
  return ALPHA_BETA.get(teacher, {}).get(dataset, DEFAULT_ALPHA_BETA)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses ``"dataset=etth1,pred_len=96,smoke=True"`` into a ConfigDict.

  Every key must be one of ``defaults``; values take the type of their default.
  """
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    if "=" not in item:
      raise ValueError(f"config argument {item!r} is not of the form key=value")
    key, value = (s.strip() for s in item.split("=", 1))
    if key not in defaults:
      raise ValueError(
          f"unknown config argument {key!r}; valid: {', '.join(sorted(defaults))}")
    default = defaults[key]
    if isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={value!r} must be True or False")
      out[key] = value.lower() in ("true", "1")
    elif isinstance(default, int):
      out[key] = int(value)
    elif isinstance(default, float):
      out[key] = float(value)
    else:
      out[key] = value
  return out


def data_config(dataset: str, pred_len: int, batch_size: int) -> ml_collections.ConfigDict:
  """The ``data`` group: reference windows (L = 720, label 48) and loader settings."""
  return ml_collections.ConfigDict(dict(
      name=dataset,
      data_dir="",  # '' = argument-less default: $TIMEDISTILL_DATA_DIR, then the user cache
      path="",  # CSV file for dataset=custom
      seq_len=720,
      label_len=48,
      pred_len=pred_len,
      features="M",
      target="OT",
      freq="h",
      batch_size=batch_size,
      eval_batch_size=256,  # any size gives the same metrics: the last batch is masked
  ))


def train_config(epochs: int, patience: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      epochs=epochs,
      patience=patience,
      log_every=50,  # steps between live-loss updates (and non-finite checks)
      checkpoint_every=100,  # steps between mid-epoch checkpoints for resuming (0: epoch ends)
      progress=True,
      # Caps used by smoke runs only (0 = none); a capped run says so in results.json.
      max_steps_per_epoch=0,
      max_eval_batches=0,
  ))


def parallel_config() -> ml_collections.ConfigDict:
  """The ``parallel`` group: data parallelism and multi-process start-up (see README)."""
  return ml_collections.ConfigDict(dict(
      mode="none",  # none (jit) | pmap | shard_map; the global batch is split over all devices
      coordinator_address="",  # host:port of process 0, for several processes/hosts
      num_processes=0,
      process_id=-1,
      auto_initialize=False,  # let JAX find the cluster (TPU VM pods, SLURM)
  ))


def apply_smoke(config: ml_collections.ConfigDict) -> None:
  """Shrinks any run to seconds on a CPU: 2 short epochs, 2 eval batches."""
  config.train.epochs = 2
  config.train.max_steps_per_epoch = 4
  config.train.max_eval_batches = 2
  config.train.log_every = 1
