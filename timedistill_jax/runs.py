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
from timedistill_jax.data import iterate_batches, load_dataset, num_batches
from timedistill_jax.errors import CheckpointError, ConfigError, unknown_name
from timedistill_jax.models import build_model, count_params, init_variables
from timedistill_jax.models.regressor import Regressor
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
  step_fn: Callable  # (replicated state, process-local host batch) -> (state, metrics)
  eval_fn: Callable  # (replicated variables, placed batch) -> error sums of all devices
  metadata: dict  # extra JSON for checkpoints and results (teacher info, ...)


def _eval_fn(model, config, par):
  return par.compile_eval(functools.partial(
      steps.eval_step, model=model, pred_len=config.data.pred_len, f_dim=f_dim_of(config)))


def build_student_run(config, splits, par: parallel.DataParallel) -> Run:
  """A model trained on the data alone (the student baseline, or a teacher)."""
  model = model_for(config, splits, par)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  variables = jax.jit(functools.partial(init_variables, model, sample_batch(splits)))(init_rng)
  tx = make_optimizer(config.optim, steps_per_epoch(config, splits), config.train.epochs)
  state = create_train_state({"model": variables["params"]}, variables.get("batch_stats", {}),
                             tx, state_rng)
  train_step = par.compile_step(functools.partial(
      steps.train_step, model=model, pred_len=config.data.pred_len, f_dim=f_dim_of(config)))
  return Run(model=model, state=state,
             step_fn=lambda state, batch: train_step(state, par.shard(host_batch(batch))),
             eval_fn=_eval_fn(model, config, par), metadata={})


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
  """Teacher predictions and features for every window of ``split`` (host numpy arrays)."""
  fn = jax.jit(functools.partial(steps.teacher_outputs, tuple(teachers)))
  preds = [[] for _ in teachers]
  hiddens = [[] for _ in teachers]
  for batch in iterate_batches(split, batch_size):
    keep = int(batch["mask"].sum())
    for i, (p, h) in enumerate(fn(teacher_variables, host_batch(batch))):
      preds[i].append(np.asarray(p)[:keep])
      hiddens[i].append(np.asarray(h)[:keep])
  return (tuple(np.concatenate(p) for p in preds), tuple(np.concatenate(h) for h in hiddens))


def _cached_step_fn(config, splits, teachers, teacher_vars, kw, par):
  """The cached-teacher step, or None when caching is off or the outputs would not fit."""
  if not config.teacher.get("cache", True):
    return None
  n = len(splits.train)
  per_window = sum(kw["pred_len"] * splits.num_channels + splits.num_channels * t.feature_dim
                   for t in teachers) * 4
  if n * per_window / 2**20 > config.teacher.get("cache_max_mb", 2048):
    return None
  preds, hiddens = precompute_teacher_outputs(
      teachers, teacher_vars, splits.train, config.data.eval_batch_size)
  compiled = par.compile_step(functools.partial(steps.cached_distill_step, **kw))

  def step_fn(state, batch):  # the window indices pick the cached outputs on the host
    idx = batch["index"]
    return compiled(state, par.shard(host_batch(batch) | {
        "teacher_pred": tuple(p[idx] for p in preds),
        "teacher_hidden": tuple(h[idx] for h in hiddens)}))

  return step_fn


def build_distill_run(config, splits, par: parallel.DataParallel) -> Run:
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

  step_fn = _cached_step_fn(config, splits, teachers, teacher_vars, kw, par)
  if step_fn is None:
    online = par.compile_step(functools.partial(steps.distill_step, teachers=teachers, **kw),
                              num_replicated=2)
    placed_vars = par.replicate(teacher_vars)
    step_fn = lambda state, batch: online(state, placed_vars, par.shard(host_batch(batch)))

  metadata = {
      "teachers": [{"workdir": w, "model": t.metadata["model"],
                    "test": t.metadata.get("test"), "val": t.metadata.get("val")}
                   for w, t in zip(workdirs, loaded)],
      "num_regressor_params": sum(count_params({"params": r})
                                  for r in state.params["regressors"]),
  }
  return Run(model=student, state=state, step_fn=step_fn,
             eval_fn=_eval_fn(student, config, par), metadata=metadata)


# The teacher is trained like the student baseline; only its config differs.
RUN_KINDS = {"student": build_student_run, "teacher": build_student_run,
             "distill": build_distill_run}


def build_run(config, splits, par: parallel.DataParallel | None = None) -> Run:
  """The ``Run`` of ``config.kind`` (``student`` by default)."""
  kind = config.get("kind", "student")
  if kind not in RUN_KINDS:
    raise unknown_name("run kind (config.kind)", kind, RUN_KINDS)
  return RUN_KINDS[kind](config, splits, par or parallel.DataParallel("none"))


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
