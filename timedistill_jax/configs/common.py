"""Tables shared by every config: datasets, per-dataset student settings, teacher settings.

Numbers from the reference code, the run scripts of LingFengGold/TimeDistill and its
``config.json`` (docs/method.md, "Training settings" and "Teacher settings").
"""

import ml_collections

from timedistill_jax.errors import unknown_name

# Per-dataset student settings (docs/method.md, "Training settings"): norm, hidden width D,
# epoch budget, batch size.
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

# alpha / beta of the distillation loss per dataset and teacher (docs/method.md, "Training
# settings"): the tuned
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

# Teacher architecture per dataset and training settings (docs/method.md, "Teacher settings").
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
    # All: patch 8, stride 4, dims 64, one stage, large kernel 51, small 5 (TEACHER_DEFAULTS).
    "moderntcn": {
        "etth1": dict(ffn_ratio=1, num_blocks=1, dropout=0.3, head_dropout=0.0),
        "etth2": dict(ffn_ratio=1, num_blocks=1, dropout=0.3, head_dropout=0.0),
        "ettm1": dict(ffn_ratio=8, num_blocks=3, dropout=0.3, head_dropout=0.0),
        "ettm2": dict(ffn_ratio=8, num_blocks=3, dropout=0.3, head_dropout=0.2),
        "weather": dict(ffn_ratio=8, num_blocks=1, dropout=0.4, head_dropout=0.0),
        "ecl": dict(ffn_ratio=8, num_blocks=1, dropout=0.9, head_dropout=0.0),
        "traffic": dict(ffn_ratio=8, num_blocks=1, dropout=0.9, head_dropout=0.0),
        "solar": dict(ffn_ratio=1, num_blocks=1, dropout=0.1, head_dropout=0.0),
        "synthetic": dict(ffn_ratio=1, num_blocks=1, dropout=0.3, head_dropout=0.0),
        "custom": dict(ffn_ratio=1, num_blocks=1, dropout=0.3, head_dropout=0.0),
    },
    # config.json; the Traffic script trains d_model = d_ff = 512, config.json rebuilds 128.
    "patchtst": {
        "etth1": dict(e_layers=1, n_heads=16, d_model=512, d_ff=2048),
        "etth2": dict(e_layers=3, n_heads=4, d_model=512, d_ff=2048),
        "ettm1": dict(e_layers=3, n_heads=2, d_model=512, d_ff=2048),
        "ettm2": dict(e_layers=3, n_heads=4, d_model=512, d_ff=2048),
        "weather": dict(e_layers=2, n_heads=3, d_model=512, d_ff=2048),
        "ecl": dict(e_layers=2, n_heads=16, d_model=128, d_ff=256),
        "traffic": dict(e_layers=2, n_heads=8, d_model=128, d_ff=128),
        "solar": dict(e_layers=2, n_heads=8, d_model=128, d_ff=128),
        "synthetic": dict(e_layers=1, n_heads=16, d_model=512, d_ff=2048),
        "custom": dict(e_layers=1, n_heads=16, d_model=512, d_ff=2048),
    },
    "timemixer": {
        "etth1": dict(e_layers=2, d_model=16, d_ff=32, down_sampling_layers=3),
        "etth2": dict(e_layers=2, d_model=16, d_ff=32, down_sampling_layers=3),
        "ettm1": dict(e_layers=2, d_model=16, d_ff=32, down_sampling_layers=3),
        "ettm2": dict(e_layers=2, d_model=32, d_ff=32, down_sampling_layers=3),
        "weather": dict(e_layers=3, d_model=16, d_ff=32, down_sampling_layers=3),
        "ecl": dict(e_layers=3, d_model=16, d_ff=32, down_sampling_layers=3),
        "traffic": dict(e_layers=3, d_model=32, d_ff=64, down_sampling_layers=3, use_norm=0),
        "solar": dict(e_layers=3, d_model=512, d_ff=2048, down_sampling_layers=2, use_norm=0,
                      channel_independence=0),
        "synthetic": dict(e_layers=2, d_model=16, d_ff=32, down_sampling_layers=3),
        "custom": dict(e_layers=2, d_model=16, d_ff=32, down_sampling_layers=3),
    },
}
# Teacher training: lr 1e-4, batch 32, 10 epochs, patience 5, type1, unless stated here.
TEACHER_TRAIN = {
    "itransformer": {
        "ecl": dict(batch_size=16, lr=5e-4),
        "solar": dict(lr=5e-4),
        "traffic": dict(batch_size=16, lr=1e-3),
    },
    "moderntcn": {
        "etth1": dict(patience=20), "etth2": dict(patience=20), "ettm1": dict(patience=20),
        "ettm2": dict(patience=20), "weather": dict(patience=20), "ecl": dict(patience=10),
        "traffic": dict(batch_size=8, lr=5e-5, patience=3), "solar": dict(lr=2.5e-3),
        "synthetic": dict(patience=20), "custom": dict(patience=20),
    },
    # scripts/long_term_forecast/<DS>/PatchTST.sh: only batch sizes and Solar's lr are set.
    "patchtst": {
        "ecl": dict(batch_size=4), "traffic": dict(batch_size=4), "weather": dict(epochs=3),
        "solar": dict(batch_size=4, lr=5e-4),
    },
    # scripts/long_term_forecast/<DS>/TimeMixer.sh (label_len 0 everywhere; a literal
    # --batch_size on the command line wins over the script's variable).
    "timemixer": {
        "etth1": dict(lr=1e-3, batch_size=128, patience=10),
        "etth2": dict(lr=1e-3, batch_size=128, patience=10),
        "ettm1": dict(lr=1e-2, batch_size=128),
        "ettm2": dict(lr=1e-3, batch_size=128),
        "weather": dict(lr=1e-2, batch_size=128, epochs=20, patience=10),
        "ecl": dict(lr=1e-3, batch_size=32, epochs=20, patience=10),
        "traffic": dict(lr=1e-3, batch_size=4),
        "solar": dict(lr=1e-3, batch_size=32, patience=3),
        "synthetic": dict(lr=1e-3, batch_size=128, patience=10),
        "custom": dict(lr=1e-3, batch_size=128, patience=10),
    },
}


# Settings every dataset shares (TSLib command-line defaults unless the scripts say otherwise).
TEACHER_DEFAULTS = {
    "itransformer": dict(n_heads=8, dropout=0.1, activation="gelu"),
    "moderntcn": dict(patch_size=8, patch_stride=4, dims=64, large_size=51, small_size=5,
                      revin=True, affine=False),
    "patchtst": dict(dropout=0.1, activation="gelu", patch_len=16, stride=8),
    # channel_independence and use_norm keep the model's defaults (1) unless TEACHER_MODEL says.
    "timemixer": dict(dropout=0.1, moving_avg=25, down_sampling_window=2,
                      down_sampling_method="avg", decomp_method="moving_avg"),
}


# -- MICN, FEDformer, TimesNet, Autoformer --------------------------------------------------
# Same shapes as ``TEACHER_MODEL``, ``TEACHER_DEFAULTS`` and ``TEACHER_TRAIN`` above, into which
# they are merged. Sources: the reference's ``config.json`` (architecture; docs/method.md, "Teacher
# settings") and ``scripts/long_term_forecast/<DS>/<teacher>.sh`` (training). Settings a model does
# not read are left out (MICN never reads e_layers, d_ff or n_heads; TimesNet never reads n_heads or
# d_layers: it has no attention and no decoder).
#
# ``factor`` (Autoformer only: top int(factor ln L) delays) is 3 in the training scripts except
# ETTm2 and Solar. The reference rebuilds its teachers for distillation from ``config.json``,
# which has no ``factor``, so it distils them with the command-line default 1; a teacher here
# keeps the factor it was trained with.
#
# ``label_len`` is a data setting (the decoder start); MICN's scripts use 96, the others 48 (the
# default). MICN's forward never reads it; it only sets the length of ``y_mark``.


_BIG = dict(d_model=512, d_ff=2048)

_MORE_MODEL = {
    "micn": {
        "etth1": dict(d_layers=1, d_model=512),
        "etth2": dict(d_layers=1, d_model=512),
        "ettm1": dict(d_layers=1, d_model=512),
        "ettm2": dict(d_layers=1, d_model=512),
        "weather": dict(d_layers=1, d_model=32),
        "ecl": dict(d_layers=1, d_model=256),
        "traffic": dict(d_layers=1, d_model=512),
        "solar": dict(d_layers=1, d_model=32),
        "synthetic": dict(d_layers=1, d_model=512),
        "custom": dict(d_layers=1, d_model=512),
    },
    "fedformer": {
        **{ds: dict(e_layers=2, d_layers=1, **_BIG)
           for ds in ("etth1", "etth2", "ettm1", "ettm2", "weather", "ecl", "synthetic",
                      "custom")},
        "traffic": dict(e_layers=4, d_layers=1, **_BIG),
        "solar": dict(e_layers=2, d_layers=1, d_model=64, d_ff=64),
    },
    "timesnet": {
        "etth1": dict(e_layers=2, d_model=16, d_ff=32),
        "etth2": dict(e_layers=2, d_model=32, d_ff=32),
        "ettm1": dict(e_layers=2, d_model=16, d_ff=32),
        "ettm2": dict(e_layers=2, d_model=16, d_ff=32),
        "weather": dict(e_layers=2, d_model=32, d_ff=32),
        "ecl": dict(e_layers=2, d_model=32, d_ff=32),
        "traffic": dict(e_layers=2, d_model=32, d_ff=32),
        "solar": dict(e_layers=2, d_model=32, d_ff=32),
        "synthetic": dict(e_layers=2, d_model=16, d_ff=32),
        "custom": dict(e_layers=2, d_model=16, d_ff=32),
    },
    "autoformer": {
        **{ds: dict(e_layers=2, d_layers=1, factor=3, **_BIG)
           for ds in ("etth1", "etth2", "ettm1", "weather", "ecl", "traffic", "synthetic",
                      "custom")},
        "ettm2": dict(e_layers=2, d_layers=1, factor=1, **_BIG),
        "solar": dict(e_layers=2, d_layers=1, factor=1, **_BIG),
    },
}

# TSLib command-line defaults (run.py) every dataset shares.
_MORE_DEFAULTS = {
    "micn": dict(conv_kernel=(12, 16), dropout=0.1),
    "fedformer": dict(n_heads=8, moving_avg=25, dropout=0.1, activation="gelu",
                      version="Fourier", modes=32, mode_select="random"),
    "timesnet": dict(top_k=5, num_kernels=6, dropout=0.1),
    "autoformer": dict(n_heads=8, moving_avg=25, dropout=0.1, activation="gelu"),
}

# Teacher training: lr 1e-4, batch 32, 10 epochs, patience 5, type1, label_len 48, unless stated.
_MORE_TRAIN = {
    "micn": {ds: dict(label_len=96)
             for ds in ("etth1", "etth2", "ettm1", "ettm2", "weather", "ecl", "traffic",
                        "solar", "synthetic", "custom")},
    "fedformer": {},
    "timesnet": {"weather": dict(epochs=1)},
    "autoformer": {"weather": dict(epochs=2), "traffic": dict(epochs=3)},
}

TEACHER_MODEL.update(_MORE_MODEL)
TEACHER_DEFAULTS.update(_MORE_DEFAULTS)
TEACHER_TRAIN.update(_MORE_TRAIN)


def teacher_label_len(teacher: str, dataset: str) -> int:
  """The decoder start a teacher was trained with (MICN's scripts use 96; 48 otherwise)."""
  return TEACHER_TRAIN.get(teacher, {}).get(dataset, {}).get("label_len", 48)

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
      # reference: TSLib's borders; deploy: train on every row but the last val_fraction, which
      # validates (and stands in for the test split), so a forecast starts where the file ends.
      split="reference",
      val_fraction=0.1,
      batch_size=batch_size,
      eval_batch_size=256,  # any size gives the same metrics: the last batch is masked
  ))


def train_config(epochs: int, patience: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      epochs=epochs,
      patience=patience,
      # Steps run in one call (0: up to the next checkpoint or the end of the epoch, at most
      # log_every); the live loss and the progress bar update once a call.
      steps_per_call=0,
      log_every=100,
      # Mid-epoch checkpoints for resuming, besides those at every epoch's end: every this many
      # steps (0: none by count), and at the first call that ends this long after the last save.
      checkpoint_every=0,
      checkpoint_seconds=600.0,
      # A loss above this many times the first step's stops the run as diverged (0: never).
      divergence_factor=1000.0,
      progress=True,
      tensorboard=True,  # event files under <workdir>/tensorboard (the tensorboard extra)
      # Caps used by smoke runs only (0 = none); a capped run says so in results.json.
      max_steps_per_epoch=0,
      max_eval_batches=0,
  ))


def parallel_config() -> ml_collections.ConfigDict:
  """The ``parallel`` group: data parallelism and multi-process start-up (docs/parallel.md)."""
  return ml_collections.ConfigDict(dict(
      mode="none",  # none (jit) | pmap | shard_map; the global batch is split over all devices
      coordinator_address="",  # host:port of process 0, for several processes/hosts
      num_processes=0,
      process_id=-1,
      auto_initialize=False,  # let JAX find the cluster (TPU VM pods, SLURM)
      # shard_map with an ensemble: devices its members are split over (a 2-D mesh of
      # member_devices x the rest, the batch split over the rest).
      member_devices=1,
  ))


ENSEMBLE_KEYS = ("seeds", "lr", "alpha", "beta", "variants")


def ensemble_config() -> ml_collections.ConfigDict:
  """The ``ensemble`` group: comma-separated lists of what an ensemble's members vary (seeds,
  lr; alpha, beta, variants for distillation). All empty: a single run."""
  return ml_collections.ConfigDict({key: "" for key in ENSEMBLE_KEYS})


def apply_smoke(config: ml_collections.ConfigDict) -> None:
  """Shrinks any run to seconds on a CPU: 2 short epochs, 2 eval batches."""
  config.train.epochs = 2
  config.train.max_steps_per_epoch = 4
  config.train.max_eval_batches = 2
