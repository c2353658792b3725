"""Distillation runs: the teachers restored and checked against the run, their outputs cached on
the device, and the student's step (``steps.distill_step`` or ``steps.cached_distill_step``)."""

import functools

import jax
import numpy as np

from timedistill_jax import parallel, steps
from timedistill_jax.data.device import device_data, window_starts
from timedistill_jax.errors import ConfigError
from timedistill_jax.models import count_params
from timedistill_jax.models.regressor import Regressor
from timedistill_jax.runs.assembly import (Parts, f_dim_of, loop_fn, model_for, sample_batch)
from timedistill_jax.runs.restore import restore_run
from timedistill_jax.timing import PhaseClock
from timedistill_jax.train_state import create_distill_state, distill_initializer

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


def distill_parts(config, splits, par: parallel.DataParallel, clock=None) -> Parts:
  """The student, one regressor per teacher and the distillation step; the teachers' outputs
  on the training windows cached on the device when they fit."""
  workdirs = teacher_workdirs(config)
  loaded = [restore_run(w, check=lambda meta, w=w: check_teacher(config, splits, meta, w))
            for w in workdirs]
  workdirs += torch_teacher_paths(config)
  loaded += [load_torch_teacher_of(config, splits, p) for p in torch_teacher_paths(config)]
  teachers = tuple(t.model for t in loaded)
  teacher_vars = tuple(t.variables for t in loaded)

  student = model_for(config, splits, par)
  sample = sample_batch(splits)
  init = distill_initializer(student, teachers, sample)

  def init_state(config, tx):
    return create_distill_state(student, teachers, tx, jax.random.PRNGKey(config.seed), sample,
                                initializer=init)

  kw = dict(student=student, regressor=Regressor(features=student.feature_dim),
            loss=steps.LossConfig.from_config(config.distill), pred_len=config.data.pred_len,
            f_dim=f_dim_of(config))
  regressor_shapes = [jax.eval_shape(kw["regressor"].init, jax.random.PRNGKey(0),
                                     jax.ShapeDtypeStruct((1, 1, t.feature_dim), "float32"))
                      for t in teachers]
  metadata = {
      "teachers": [{"workdir": w, "model": t.metadata["model"],
                    "test": t.metadata.get("test"), "val": t.metadata.get("val")}
                   for w, t in zip(workdirs, loaded)],
      "num_regressor_params": sum(count_params(r) for r in regressor_shapes),
  }
  data = device_data(splits)
  if _cache_fits(config, splits, teachers):
    with (clock or PhaseClock()).phase("teacher cache"):
      preds, hiddens = jax.block_until_ready(precompute_teacher_outputs(
          teachers, teacher_vars, splits.train, config.data.eval_batch_size))
    return Parts(model=student, body=functools.partial(steps.cached_distill_step, **kw),
                 data=data.with_teacher_outputs(preds, hiddens), replicated=(),
                 init_state=init_state, metadata=metadata)
  return Parts(model=student, body=functools.partial(steps.distill_step, teachers=teachers, **kw),
               data=data, replicated=(par.replicate(teacher_vars),), init_state=init_state,
               metadata=metadata)
