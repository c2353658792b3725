"""Distillation: frozen teacher(s) -> MLP student, with the TimeDistill loss.

``distill_step(state, teacher_variables, batch) -> (state, metrics)`` is pure and jitted with the
state donated. The teachers run in eval mode under ``stop_gradient`` and are never in the
optimiser state; the student and one regressor per teacher are trained together by the same
optimiser. The regressed teacher feature stays a trainable function, so the feature-level terms
send gradient into the regressor through the teacher side too, as in the reference.

Several teachers at once (the reference crashes on this): each gets its own regressor and the
distillation terms are averaged over teachers.

A frozen teacher gives the same output for a window in every epoch, so with
``config.teacher.cache`` its predictions and features on the training windows are computed once
(when they fit in ``config.teacher.cache_max_mb``) and the cached step reads them from the batch.
``tests/test_distill.py`` checks that both paths give the same step.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from timedistill_jax import losses, steps
from timedistill_jax.checkpoints import load_teacher
from timedistill_jax.data import iterate_batches
from timedistill_jax.errors import ConfigError
from timedistill_jax.models import count_params
from timedistill_jax.models.regressor import Regressor
from timedistill_jax.train_state import create_train_state, make_optimizer


@dataclasses.dataclass(frozen=True)
class LossConfig:
  alpha: float
  beta: float
  temperature: float = 0.5
  num_scales: int = 3
  sup_weight: float = 1.0  # the three switches of the paper's loss ablation
  scale_weight: float = 1.0
  period_weight: float = 1.0


def teacher_outputs(teachers, teacher_variables, batch):
  """``[(pred [B, H, C], hidden [B, C, d_t]), ...]`` of the frozen teachers, eval mode."""
  outs = []
  for model, variables in zip(teachers, teacher_variables):
    pred, features, _ = steps.apply_model(model, variables, batch, train=False)
    outs.append(jax.lax.stop_gradient((pred, features["hidden"])))
  return outs


def _distill_update(state, batch, outs, *, student, regressor, loss: LossConfig, pred_len: int,
                    f_dim: int, axis_name=None):
  rng = steps.step_rng(state, axis_name)
  y = steps.target_of(batch, pred_len, f_dim)
  mask = batch["mask"]
  weight = steps.device_weight(mask, axis_name)

  def loss_fn(params):
    variables = steps.model_variables(params["model"], state.batch_stats)
    pred_s, feats_s, new_stats = steps.apply_model(student, variables, batch, train=True, rng=rng)
    totals, parts = [], []
    for reg_params, (pred_t, hidden_t) in zip(params["regressors"], outs):
      hidden_t = regressor.apply(reg_params, hidden_t)  # [B, C_t, D]
      # FEDformer / Autoformer features have min(C, d_model) rows (Traffic: 512 of 862, Solar
      # FEDformer: 64 of 137); the reference then compares only the student's first C_t rows.
      hidden_s = feats_s["hidden"][:, :hidden_t.shape[1]]
      total, p = losses.timedistill_loss(
          pred_s[..., f_dim:], pred_t[..., f_dim:], hidden_s, hidden_t, y,
          alpha=loss.alpha, beta=loss.beta, temperature=loss.temperature,
          num_scales=loss.num_scales, mask=mask, sup_weight=loss.sup_weight,
          scale_weight=loss.scale_weight, period_weight=loss.period_weight)
      totals.append(total)
      parts.append(p)
    n = len(totals)
    total = sum(totals) / n * weight
    mean_parts = {k: sum(p[k] for p in parts) / n * weight for k in parts[0]}
    return total, (mean_parts, new_stats)

  (total, (parts, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
  state = state.apply_gradients(grads, batch_stats=new_stats)
  metrics = {"loss": total} | parts
  if axis_name is not None:
    metrics = jax.lax.pmean(metrics, axis_name)
  return state, metrics


def distill_step(state, teacher_variables, batch, *, student, teachers, regressor,
                 loss: LossConfig, pred_len: int, f_dim: int = 0, axis_name=None):
  """One distillation step with the teachers run on the batch (the reference's way)."""
  outs = teacher_outputs(teachers, teacher_variables, batch)
  return _distill_update(state, batch, outs, student=student, regressor=regressor, loss=loss,
                         pred_len=pred_len, f_dim=f_dim, axis_name=axis_name)


def cached_distill_step(state, batch, *, student, regressor, loss: LossConfig, pred_len: int,
                        f_dim: int = 0, axis_name=None):
  """The same step with teacher outputs precomputed: ``batch["teacher_pred"]`` and
  ``batch["teacher_hidden"]`` are tuples with one entry per teacher."""
  outs = list(zip(batch["teacher_pred"], batch["teacher_hidden"]))
  return _distill_update(state, batch, outs, student=student, regressor=regressor, loss=loss,
                         pred_len=pred_len, f_dim=f_dim, axis_name=axis_name)


def jit_distill_step(student, teachers, *, loss: LossConfig, pred_len: int, f_dim: int = 0):
  """``distill_step`` with its static parts bound: ``(state, teacher_variables, batch)``."""
  regressor = Regressor(features=student.feature_dim)
  return jax.jit(functools.partial(
      distill_step, student=student, teachers=tuple(teachers), regressor=regressor, loss=loss,
      pred_len=pred_len, f_dim=f_dim), donate_argnums=0)


def create_distill_state(student, teachers, optimizer, rng, sample_batch):
  """Student and one regressor per teacher, initialised; the teachers are not in here."""
  init_rng, reg_rng, state_rng = jax.random.split(rng, 3)
  b = sample_batch
  variables = student.init({"params": init_rng, "dropout": init_rng}, b["x"], b["x_mark"],
                           b["y_mark"], train=False, mask=b["mask"])
  regressor = Regressor(features=student.feature_dim)
  regs = []
  for i, teacher in enumerate(teachers):
    dummy = jnp.zeros(b["x"].shape[:1] + (b["x"].shape[-1], teacher.feature_dim), jnp.float32)
    regs.append(regressor.init(jax.random.fold_in(reg_rng, i), dummy))
  params = {"model": variables["params"], "regressors": regs}
  return create_train_state(params, variables.get("batch_stats", {}), optimizer, state_rng)


def check_teacher(config, splits, meta: dict, workdir: str) -> None:
  """Refuses a teacher trained for other data, shapes or channels, before anything compiles."""
  tdata, d = meta["config"]["data"], config.data
  problems = []
  for key, label in (("name", "dataset"), ("seq_len", "input length"),
                     ("label_len", "label length (set --config.data.label_len)"),
                     ("pred_len", "horizon"), ("features", "features mode"),
                     ("target", "target column")):
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
        + "; ".join(problems) + ". Train a teacher for these settings with configs/teacher.py "
        "and pass its workdir as --config.teacher.workdir.")


def teacher_workdirs(config) -> list:
  return [w.strip() for w in str(config.teacher.workdir).split(",") if w.strip()]


def torch_teacher_paths(config) -> list:
  return [p.strip() for p in str(config.teacher.get("torch_checkpoint", "")).split(",")
          if p.strip()]


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
  fn = jax.jit(functools.partial(teacher_outputs, tuple(teachers)))
  preds = [[] for _ in teachers]
  hiddens = [[] for _ in teachers]
  for batch in iterate_batches(split, batch_size):
    keep = int(batch["mask"].sum())
    for i, (p, h) in enumerate(fn(teacher_variables, steps_batch(batch))):  # noqa: B007
      preds[i].append(np.asarray(p)[:keep])
      hiddens[i].append(np.asarray(h)[:keep])
  return (tuple(np.concatenate(p) for p in preds), tuple(np.concatenate(h) for h in hiddens))


def steps_batch(batch: dict) -> dict:
  return {k: batch[k] for k in ("x", "y", "x_mark", "y_mark", "mask")}


def build_distill_run(config, splits, par=None):
  """The ``Run`` for a distillation config (used by ``trainer.train_and_evaluate``)."""
  from timedistill_jax import parallel, trainer  # the trainer imports this module lazily too

  par = par or parallel.DataParallel("none")
  workdirs = teacher_workdirs(config)
  loaded = []
  for w in workdirs:
    loaded.append(load_teacher(w, check=lambda meta, w=w: check_teacher(config, splits, meta, w)))
  workdirs += torch_teacher_paths(config)
  loaded += [load_torch_teacher_of(config, splits, p) for p in torch_teacher_paths(config)]
  teachers = tuple(t.model for t in loaded)
  teacher_vars = tuple(t.variables for t in loaded)

  student = trainer.model_for(config, splits, par)
  spe = trainer.steps_per_epoch(config, splits)
  tx = make_optimizer(config.optim, spe, config.train.epochs)
  sample = trainer.sample_batch(splits)
  state = create_distill_state(student, teachers, tx, jax.random.PRNGKey(config.seed), sample)
  loss = LossConfig(alpha=float(config.distill.alpha), beta=float(config.distill.beta),
                    temperature=float(config.distill.temperature),
                    num_scales=int(config.distill.num_scales),
                    sup_weight=float(config.distill.get("sup_weight", 1.0)),
                    scale_weight=float(config.distill.get("scale_weight", 1.0)),
                    period_weight=float(config.distill.get("period_weight", 1.0)))
  kw = dict(student=student, regressor=Regressor(features=student.feature_dim), loss=loss,
            pred_len=config.data.pred_len, f_dim=trainer.f_dim_of(config))

  step_fn = _cached_step_fn(config, splits, teachers, teacher_vars, kw, par)
  if step_fn is None:
    online = par.compile_step(functools.partial(distill_step, teachers=teachers, **kw),
                              num_replicated=2)
    placed_vars = par.replicate(teacher_vars)
    step_fn = lambda state, batch: online(state, placed_vars, par.shard(steps_batch(batch)))

  metadata = {
      "teachers": [{"workdir": w, "model": t.metadata["model"],
                    "test": t.metadata.get("test"), "val": t.metadata.get("val")}
                   for w, t in zip(workdirs, loaded)],
      "num_regressor_params": sum(count_params({"params": r})
                                  for r in state.params["regressors"]),
  }
  eval_kw = dict(model=student, pred_len=config.data.pred_len, f_dim=trainer.f_dim_of(config))
  return trainer.Run(model=student, state=state, step_fn=step_fn,
                     eval_fn=par.compile_eval(functools.partial(steps.eval_step, **eval_kw)),
                     metadata=metadata)


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
  compiled = par.compile_step(functools.partial(cached_distill_step, **kw))

  def step_fn(state, batch):  # the window indices pick the cached outputs on the host
    idx = batch["index"]
    return compiled(state, par.shard(steps_batch(batch) | {
        "teacher_pred": tuple(p[idx] for p in preds),
        "teacher_hidden": tuple(h[idx] for h in hiddens)}))

  return step_fn
