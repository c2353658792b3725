"""Run assembly: from a config and its data to the model, state and compiled steps of a run.

A run kind (``config.kind``) names a builder in ``RUN_KINDS``; the loop in ``trainer.py`` asks
``build_run`` for a ``Run`` and never branches on the kind. ``restore_run`` rebuilds any
finished run (teacher, student or distilled student) from its best checkpoint alone, which is how
trained teachers are carried into distillation.
"""

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from timedistill_jax import parallel, steps
from timedistill_jax.checkpoints import CheckpointStore
from timedistill_jax.data import load_dataset, num_batches
from timedistill_jax.data.device import device_data, pad_batches, split_offsets, window_starts
from timedistill_jax.errors import CheckpointError, ConfigError, unknown_name
from timedistill_jax.models import build_model, count_params, init_variables
from timedistill_jax.metrics import MetricAccumulator
from timedistill_jax.models.regressor import Regressor
from timedistill_jax.timing import PhaseClock
from timedistill_jax.train_state import (create_distill_state, create_train_state,
                                         make_optimizer)

STEP_KEYS = ("x", "y", "x_mark", "y_mark", "mask")


def host_batch(batch: dict) -> dict:
  """The arrays a step takes (window indices stay on the host)."""
  return {k: batch[k] for k in STEP_KEYS}


def load_splits(config):
  d = config.data
  return load_dataset(
      d.name, seq_len=d.seq_len, label_len=d.label_len, pred_len=d.pred_len,
      data_dir=d.data_dir or None, features=d.features, target=d.target, freq=d.freq,
      path=d.path or None)


def f_dim_of(config) -> int:
  """The reference's ``f_dim``: MS forecasts all channels but scores only the last (target)."""
  return -1 if config.data.features == "MS" else 0


def sample_batch(splits, size: int = 1) -> dict:
  """A batch of the first ``size`` training windows (for initialisation and timing)."""
  batch = splits.train.get_batch(np.arange(size))
  return host_batch(batch | {"mask": np.ones(size, np.float32)})


def model_for(config, splits, par: parallel.DataParallel | None = None):
  """``config.model`` for the data's sizes; BatchNorm reduces over ``par``'s devices."""
  return build_model(config.model, seq_len=config.data.seq_len,
                     label_len=config.data.label_len, pred_len=config.data.pred_len,
                     enc_in=splits.num_channels, axis_name=par.axis_name if par else None)


def steps_per_epoch(config, splits) -> int:
  n = num_batches(splits.train, config.data.batch_size)
  cap = config.train.max_steps_per_epoch
  return min(n, cap) if cap else n


def eval_variables(state) -> dict:
  return steps.model_variables(state.params["model"], state.batch_stats)


@dataclasses.dataclass
class Run:
  """What the loop needs from a run kind."""

  model: object  # the Flax module that is evaluated and saved (teacher or student)
  state: object  # TrainState on one device (the loop replicates it)
  # (replicated state, start [K, B], mask [K, B], count) -> (state, metrics {name: [K]}):
  # ``count`` optimiser steps on the training windows starting at rows ``start`` (host arrays)
  step_fn: Callable
  evaluate: "Evaluator"  # (replicated variables, split name) -> metrics over every window
  offsets: dict  # the first row of each split in the placed data
  metadata: dict  # extra JSON for checkpoints and results (teacher info, ...)


def loop_fn(par: parallel.DataParallel, body, data, *replicated, clock=None, donate=True):
  """``body`` compiled as a loop over batches gathered from ``data`` (placed here once):
  ``(carry, start [K, B], mask [K, B], count) -> (carry, outs [K, ...])``, host blocks in."""
  compiled = par.compile_loop(body, num_replicated=1 + len(replicated), donate=donate,
                              clock=clock)
  placed = par.replicate(data)

  def call(carry, start, mask, count):
    return compiled(carry, *replicated, placed, par.shard_block(start), par.shard_block(mask),
                    par.replicate(np.int32(count)))

  return call


class Evaluator:
  """Error metrics of a model over every window of a split, each split in one call.

  The batches of a pass (the last one padded and masked) are gathered on the device and their
  error sums come back together; the host adds them in float64, batch by batch, as
  ``metrics.MetricAccumulator`` always has. Validation and test passes are padded to one
  number of batches, so one compiled program serves both (``split_names`` to cover others).
  """

  def __init__(self, model, config, splits, par=None, *, data=None, clock=None,
               split_names=("val", "test")):
    par = par or parallel.DataParallel("none")
    self.splits, self.offsets = splits, split_offsets(splits)
    self.batch_size = par.round_up(config.data.eval_batch_size)
    self.max_batches = config.train.get("max_eval_batches", 0)
    self.num = max(self._num_batches(name) for name in split_names)
    body = steps.as_loop_body(functools.partial(
        steps.eval_step, model=model, pred_len=config.data.pred_len, f_dim=f_dim_of(config)))
    self._fn = loop_fn(par, body, device_data(splits) if data is None else data, clock=clock,
                       donate=False)

  def _num_batches(self, name: str) -> int:
    n = num_batches(getattr(self.splits, name), self.batch_size)
    return min(n, self.max_batches) if self.max_batches else n

  def __call__(self, variables, split: str) -> dict:
    if self._num_batches(split) > self.num:
      raise ValueError(f"this Evaluator was built for {self.num} batches a split; pass "
                       f"split_names=(..., {split!r}) to evaluate the {split} split.")
    start, mask = window_starts(getattr(self.splits, split), self.offsets[split],
                                self.batch_size)
    count = self._num_batches(split)
    start, mask = pad_batches(start[:count], mask[:count], self.num)
    _, sums = self._fn(variables, start, mask, count)
    sums = jax.device_get(sums)
    acc = MetricAccumulator()
    for b in range(count):
      acc.add({k: v[b] for k, v in sums.items()})
    return acc.result()


def _build(model, config, splits, par, state, body, data, *replicated, clock, metadata=None):
  return Run(model=model, state=state,
             step_fn=loop_fn(par, body, data, *replicated, clock=clock),
             evaluate=Evaluator(model, config, splits, par, data=data, clock=clock),
             offsets=split_offsets(splits), metadata=metadata or {})


def build_student_run(config, splits, par: parallel.DataParallel, clock=None) -> Run:
  """A model trained on the data alone (the student baseline, or a teacher)."""
  model = model_for(config, splits, par)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  variables = jax.jit(functools.partial(init_variables, model, sample_batch(splits)))(init_rng)
  tx = make_optimizer(config.optim, steps_per_epoch(config, splits), config.train.epochs)
  state = create_train_state({"model": variables["params"]}, variables.get("batch_stats", {}),
                             tx, state_rng)
  body = functools.partial(steps.train_step, model=model, pred_len=config.data.pred_len,
                           f_dim=f_dim_of(config))
  return _build(model, config, splits, par, state, body, device_data(splits), clock=clock)


# -- distillation -------------------------------------------------------------------------------

def check_teacher(config, splits, meta: dict, workdir: str) -> None:
  """Refuses a teacher trained for other data, shapes or channels, before anything compiles."""
  tdata, d = meta["config"]["data"], config.data
  problems = []
  for key, label in (("name", "dataset"), ("seq_len", "input length"),
                     ("label_len", "label length (set --config.data.label_len)"),
                     ("pred_len", "horizon"), ("features", "features mode"),
                     ("target", "target column"),
                     ("freq", "time-feature frequency (set --config.data.freq)")):
    if tdata[key] != d[key]:
      problems.append(f"{label} {tdata[key]!r} (this run: {d[key]!r})")
  if meta["data"]["num_channels"] != splits.num_channels:
    problems.append(f"{meta['data']['num_channels']} channels (this run: {splits.num_channels})")
  elif not problems and not np.allclose(meta["data"]["scaler_mean"], splits.scaler_mean):
    problems.append("a different scaler (the data files differ)")
  want = config.teacher.get("name", "")
  if want and meta["model"] != want:
    problems.append(f"model {meta['model']!r} (config.teacher.name: {want!r})")
  if problems:
    raise ConfigError(
        f"teacher {workdir} does not match this run: it was trained with "
        + "; ".join(problems) + ". Train a teacher for these settings with the teacher config "
        "(--config teacher:...) and pass its workdir as --config.teacher.workdir.")


def _paths(value) -> list:
  return [w.strip() for w in str(value).split(",") if w.strip()]


def teacher_workdirs(config) -> list:
  return _paths(config.teacher.workdir)


def torch_teacher_paths(config) -> list:
  return _paths(config.teacher.get("torch_checkpoint", ""))


def load_torch_teacher_of(config, splits, path):
  """A reference PyTorch teacher (``.pth``) built with ``config.teacher.model``'s settings."""
  from timedistill_jax.convert import load_torch_teacher  # torch is imported only for a .pth

  d = config.data
  model_config = dict(name=config.teacher.name, **config.teacher.get("model", {}))
  return load_torch_teacher(path, model_config, seq_len=d.seq_len, label_len=d.label_len,
                            pred_len=d.pred_len, enc_in=splits.num_channels,
                            num_time_features=splits.num_time_features)


def precompute_teacher_outputs(teachers, teacher_variables, split, batch_size: int) -> tuple:
  """Teacher predictions and features for every window of ``split``, in window order, computed
  on the default device in one call: ``((pred [N, H, C], ...), (hidden [N, C_t, D_t], ...))``,
  one entry per teacher, left on the device."""
  data = device_data(split)
  body = steps.as_loop_body(
      lambda variables, batch, axis_name=None: steps.teacher_outputs(teachers, variables, batch))
  start, mask = window_starts(split, 0, batch_size)
  fn = loop_fn(parallel.DataParallel("none"), body, data, donate=False)
  _, outs = fn(tuple(teacher_variables), start, mask, len(start))
  n = len(split)
  flat = [tuple(a.reshape((-1,) + a.shape[2:])[:n] for a in out) for out in outs]
  return tuple(p for p, _ in flat), tuple(h for _, h in flat)


def teacher_cache_mb(config, splits, teachers) -> float:
  """MiB of float32 teacher outputs on every training window."""
  per_window = sum(config.data.pred_len * splits.num_channels
                   + splits.num_channels * t.feature_dim for t in teachers) * 4
  return len(splits.train) * per_window / 2**20


def _cache_fits(config, splits, teachers) -> bool:
  """Whether the teachers' outputs are cached; says so when they are over the cap."""
  if not config.teacher.get("cache", True):
    return False
  need, cap = teacher_cache_mb(config, splits, teachers), config.teacher.get("cache_max_mb", 2048)
  if need <= cap:
    return True
  print(f"NOTE: the teachers' outputs on the {len(splits.train)} training windows need "
        f"{need:.0f} MiB, over config.teacher.cache_max_mb = {cap}; the teachers run on every "
        "batch instead (slower). Raise --config.teacher.cache_max_mb if the device has the "
        "memory, or set --config.teacher.cache=False to say so.")
  return False


def build_distill_run(config, splits, par: parallel.DataParallel, clock=None) -> Run:
  """The student, one regressor per teacher and the distillation step."""
  workdirs = teacher_workdirs(config)
  loaded = [restore_run(w, check=lambda meta, w=w: check_teacher(config, splits, meta, w))
            for w in workdirs]
  workdirs += torch_teacher_paths(config)
  loaded += [load_torch_teacher_of(config, splits, p) for p in torch_teacher_paths(config)]
  teachers = tuple(t.model for t in loaded)
  teacher_vars = tuple(t.variables for t in loaded)

  student = model_for(config, splits, par)
  tx = make_optimizer(config.optim, steps_per_epoch(config, splits), config.train.epochs)
  state = create_distill_state(student, teachers, tx, jax.random.PRNGKey(config.seed),
                               sample_batch(splits))
  kw = dict(student=student, regressor=Regressor(features=student.feature_dim),
            loss=steps.LossConfig.from_config(config.distill), pred_len=config.data.pred_len,
            f_dim=f_dim_of(config))
  metadata = {
      "teachers": [{"workdir": w, "model": t.metadata["model"],
                    "test": t.metadata.get("test"), "val": t.metadata.get("val")}
                   for w, t in zip(workdirs, loaded)],
      "num_regressor_params": sum(count_params({"params": r})
                                  for r in state.params["regressors"]),
  }
  data = device_data(splits)
  if _cache_fits(config, splits, teachers):
    with (clock or PhaseClock()).phase("teacher cache"):
      preds, hiddens = jax.block_until_ready(precompute_teacher_outputs(
          teachers, teacher_vars, splits.train, config.data.eval_batch_size))
    body = functools.partial(steps.cached_distill_step, **kw)
    return _build(student, config, splits, par, state, body,
                  data.with_teacher_outputs(preds, hiddens), clock=clock, metadata=metadata)
  body = functools.partial(steps.distill_step, teachers=teachers, **kw)
  return _build(student, config, splits, par, state, body, data, par.replicate(teacher_vars),
                clock=clock, metadata=metadata)


# The teacher is trained like the student baseline; only its config differs.
RUN_KINDS = {"student": build_student_run, "teacher": build_student_run,
             "distill": build_distill_run}


def build_run(config, splits, par: parallel.DataParallel | None = None,
              clock: PhaseClock | None = None) -> Run:
  """The ``Run`` of ``config.kind`` (``student`` by default); ``clock`` counts compilation
  and the teacher cache."""
  kind = config.get("kind", "student")
  if kind not in RUN_KINDS:
    raise unknown_name("run kind (config.kind)", kind, RUN_KINDS)
  return RUN_KINDS[kind](config, splits, par or parallel.DataParallel("none"), clock)


# -- restoring a finished run -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Restored:
  """A trained model restored from its run's ``best`` checkpoint, ready for ``apply``."""

  model: Any
  variables: dict
  metadata: dict
  workdir: str


def restore_run(workdir, *, check: Callable[[dict], None] | None = None) -> Restored:
  """Rebuilds the model of any finished run from its best checkpoint alone (config and data
  sizes are in the metadata). ``check(metadata)`` may refuse it before anything is built.

  A distilled student's checkpoint also holds the regressors; they are restored for the
  integrity check and then dropped."""
  best = Path(workdir) / "checkpoints" / "best"
  if not best.is_dir():
    raise CheckpointError(
        f"{workdir} holds no trained model ({best} is missing). Train a teacher first, e.g. "
        "python -m timedistill_jax --config teacher:dataset=etth1,pred_len=96 "
        f"--workdir {workdir}")
  with CheckpointStore(best, create=False) as store:
    metadata = store.read_metadata()
    if check is not None:
      check(metadata)
    cfg = ml_collections.ConfigDict(metadata["config"])
    d, data = cfg.data, metadata["data"]
    model = build_model(cfg.model, seq_len=d.seq_len, label_len=d.label_len,
                        pred_len=d.pred_len, enc_in=data["num_channels"])
    f, c = data["num_time_features"], data["num_channels"]
    shapes = {"x": jnp.zeros((1, d.seq_len, c)), "x_mark": jnp.zeros((1, d.seq_len, f)),
              "y_mark": jnp.zeros((1, d.label_len + d.pred_len, f)), "mask": jnp.ones(1)}
    abstract_vars = jax.eval_shape(lambda: init_variables(model, shapes, jax.random.PRNGKey(0)))
    abstract = {"params": {"model": abstract_vars["params"]},
                "batch_stats": abstract_vars.get("batch_stats", {})}
    if cfg.get("kind") == "distill":  # the regressors' sizes depend on the teachers
      abstract["params"]["regressors"] = store.saved_shapes()["params"]["regressors"]
    tree, metadata = store.restore(abstract)
  variables = steps.model_variables(tree["params"]["model"], tree["batch_stats"])
  return Restored(model=model, variables=variables, metadata=metadata, workdir=str(workdir))


load_teacher = restore_run  # the name distillation code has always used
Teacher = Restored
