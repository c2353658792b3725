"""Checks every config value before anything is loaded, compiled or written.

Each problem is one ``ConfigError`` naming the value, what is wrong and the fix.
"""

import os

from timedistill_jax.data import DATASETS, SPLIT_MODES
from timedistill_jax.data.datasets import dataset_name
from timedistill_jax.data.time_features import num_time_features
from timedistill_jax.errors import ConfigError, unknown_name
from timedistill_jax.models import REGISTRY, model_fields
from timedistill_jax.models.layers.normalization import NORMS
from timedistill_jax.parallel import MODES as PARALLEL_MODES
from timedistill_jax.train_state import SCHEDULES

RUN_KINDS = ("student", "teacher", "distill")
FEATURES = ("M", "S", "MS")


def _positive_int(value, where: str) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"{where} must be a positive integer, got {value!r}.")


def _number(value, where: str, *, positive: bool = False) -> None:
  """A real, finite number, > 0 (``positive``) or >= 0."""
  ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and
        value == value and abs(value) != float("inf"))
  if not ok or (value <= 0 if positive else value < 0):
    raise ConfigError(f"{where} must be a number {'> 0' if positive else '>= 0'}, "
                      f"got {value!r}.")


def validate_config(config) -> None:
  """Raises ``ConfigError`` for the first invalid value of a run config."""
  kind = config.get("kind", "student")
  if kind not in RUN_KINDS:
    raise unknown_name("run kind (config.kind)", kind, RUN_KINDS)
  d = config.data
  if isinstance(d.name, str):
    d.name = dataset_name(d.name)  # Time-Series-Library's names and any case
  if d.name not in DATASETS:
    raise unknown_name("dataset", d.name, DATASETS)
  if d.name == "custom" and not d.path:
    raise ConfigError("dataset 'custom' needs the CSV file: set --config.data.path=FILE.csv")
  for key in ("seq_len", "pred_len", "batch_size", "eval_batch_size"):
    _positive_int(d[key], f"config.data.{key}")
  if isinstance(d.label_len, bool) or not isinstance(d.label_len, int) or not (
      0 <= d.label_len <= d.seq_len):
    raise ConfigError(
        f"config.data.label_len must be an integer in [0, seq_len={d.seq_len}], got "
        f"{d.label_len!r}.")
  if d.features not in FEATURES:
    raise unknown_name("features mode (config.data.features)", d.features, FEATURES)
  num_time_features(d.freq)  # raises ConfigError for an unknown frequency
  split = d.get("split", "reference")
  if split not in SPLIT_MODES:
    raise unknown_name("split (config.data.split)", split, SPLIT_MODES)
  fraction = d.get("val_fraction", 0.1)
  _number(fraction, "config.data.val_fraction", positive=True)
  if fraction >= 1:
    raise ConfigError(f"config.data.val_fraction must be below 1 (the share of the rows kept "
                      f"for validation by --config.data.split=deploy), got {fraction!r}.")

  m = config.model
  if m.name not in REGISTRY:
    raise unknown_name("model", m.name, REGISTRY)
  extra = sorted(set(m) - {"name"} - set(model_fields(m.name)))
  if extra:
    raise ConfigError(f"model {m.name!r} has no setting(s) {', '.join(extra)}; it accepts: "
                      f"{', '.join(sorted(model_fields(m.name)))}.")
  if "norm" in m and m.norm not in NORMS:
    raise unknown_name("norm (config.model.norm)", m.norm, NORMS)

  o = config.optim
  if o.schedule not in SCHEDULES:
    raise unknown_name("learning-rate schedule (config.optim.schedule)", o.schedule, SCHEDULES)
  _number(o.lr, "config.optim.lr", positive=True)
  _number(o.weight_decay, "config.optim.weight_decay")

  mode = config.get("parallel", {}).get("mode", "none")
  if mode not in PARALLEL_MODES:
    raise unknown_name("parallel mode (config.parallel.mode)", mode, PARALLEL_MODES)
  _check_ensemble(config, mode)

  t = config.train
  _positive_int(t.epochs, "config.train.epochs")
  _positive_int(t.patience, "config.train.patience")
  _positive_int(t.log_every, "config.train.log_every")
  _number(t.get("divergence_factor", 0), "config.train.divergence_factor")
  for key in ("checkpoint_every", "steps_per_call"):
    value = t.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ConfigError(f"config.train.{key} must be an integer >= 0, got {value!r}.")
  _number(t.get("checkpoint_seconds", 0), "config.train.checkpoint_seconds")

  if kind == "distill":
    dist = config.distill
    for key in ("alpha", "beta", "sup_weight", "scale_weight", "period_weight"):
      if key in dist:
        _number(dist[key], f"config.distill.{key}")
    torch_checkpoint = str(config.teacher.get("torch_checkpoint", "")).strip()
    if not str(config.teacher.workdir).strip() and not torch_checkpoint:
      raise ConfigError("distillation needs a trained teacher: set "
                        "--config.teacher.workdir=RUN_DIR of a teacher run, or "
                        "--config.teacher.torch_checkpoint=FILE.pth of a PyTorch one.")
    if torch_checkpoint:
      _check_torch_checkpoints(config.teacher, torch_checkpoint)


def _check_ensemble(config, mode: str) -> None:
  """The members' lists parse; an ensemble runs on one process under ``none`` or
  ``shard_map``, its members dividing over ``member_devices``."""
  from timedistill_jax.runs import ensemble  # jax-heavy; only needed here

  member_devices = config.get("parallel", {}).get("member_devices", 1)
  _positive_int(member_devices, "config.parallel.member_devices")
  if not ensemble.is_ensemble(config):
    if member_devices > 1:
      raise ConfigError("config.parallel.member_devices > 1 splits an ensemble's members over "
                        "devices: set --config.ensemble.seeds=... (or lr, alpha, beta, variants) "
                        "too, or leave member_devices at 1.")
    return
  count = len(ensemble.members(config))
  if mode == "pmap":
    raise ConfigError("an ensemble runs under --config.parallel.mode=none or shard_map, not "
                      "pmap (shard_map splits its members and the batch over devices).")
  if config.parallel.get("coordinator_address", "") or config.parallel.get("auto_initialize"):
    raise ConfigError("an ensemble runs in one process (several devices through shard_map); "
                      "drop the multi-process settings, or run its members as single runs.")
  if count % member_devices:
    raise ConfigError(f"{count} ensemble members do not divide over "
                      f"config.parallel.member_devices = {member_devices}.")


def _check_torch_checkpoints(teacher, paths: str) -> None:
  """A PyTorch teacher needs torch, existing files and a teacher model that accepts its
  settings (the file's shapes are checked when it is read)."""
  from timedistill_jax.convert.pth import TORCH_MISSING, torch_available

  if not torch_available():
    raise ConfigError(f"--config.teacher.torch_checkpoint: {TORCH_MISSING}")
  for path in filter(None, (p.strip() for p in paths.split(","))):
    if not os.path.isfile(path):
      raise ConfigError(f"--config.teacher.torch_checkpoint: no file {path!r}.")
  if teacher.name not in REGISTRY:
    raise unknown_name("teacher (config.teacher.name)", teacher.name, REGISTRY)
  extra = sorted(set(teacher.get("model", {})) - set(model_fields(teacher.name)))
  if extra:
    raise ConfigError(f"teacher {teacher.name!r} has no setting(s) {', '.join(extra)} "
                      f"(config.teacher.model); it accepts: "
                      f"{', '.join(sorted(model_fields(teacher.name)))}.")
