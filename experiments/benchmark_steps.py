r"""Median ms per jitted step on one dataset's shapes: train_step, distill_step, inference.

From the repository root:

  python -m experiments.benchmark_steps --dataset etth1 --pred_len 96 --out runs/bench_steps.json

Measures, at batch 32 (L=720): the supervised train_step of the plain MLP, the DMLP and the
iTransformer teacher; distill_step with the teacher run on every batch (the reference's way) and
with cached teacher outputs, for both students; and eval-mode inference of each model. Median
over ``--repeats`` calls after warm-up, each ended with ``block_until_ready``. The teacher has
random weights: the cost of a step does not depend on them. Uses real data when the dataset is
found, else random data of the same shape (``--random``). Prints a Markdown table and writes
JSON.
"""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from timedistill_jax import losses, runs, steps
from timedistill_jax.configs import distill as distill_config
from timedistill_jax.configs import student as student_config
from timedistill_jax.configs import teacher as teacher_config
from timedistill_jax.models.regressor import Regressor
from timedistill_jax.timing import median_ms
from timedistill_jax.train_state import create_distill_state, make_optimizer


def _ms(fn, repeats: int) -> float:
  """Median ms of ``fn()`` over ``repeats`` calls, after 5 warm-up calls."""
  return median_ms(fn, warmup=5, repeats=repeats)


def timed_train_step(config, splits, batch, repeats):
  run = runs.build_run(config, splits)
  box = {"state": run.state}

  def call():
    box["state"], m = run.step_fn(box["state"], batch)
    return m["loss"]

  train_ms = _ms(call, repeats)
  infer = jax.jit(lambda v, b: steps.predict_step(v, b, model=run.model))
  variables = runs.eval_variables(box["state"])  # run.state was donated to the step
  hb = runs.host_batch(batch)
  return train_ms, _ms(lambda: infer(variables, hb), repeats), run.model, variables


def main(argv):
  del argv
  arg = f"dataset={_DATASET.value},pred_len={_PRED_LEN.value}"
  s_cfg = student_config.get_config(arg)
  splits = runs.load_splits(s_cfg)
  idx = np.arange(_BATCH.value)
  batch = splits.train.get_batch(idx) | {"mask": np.ones(_BATCH.value, np.float32),
                                         "index": idx}
  rows, n = {}, _REPEATS.value
  models = {}
  for name, cfg in (("mlp", student_config.get_config(arg + ",model=mlp")),
                    ("dmlp", s_cfg),
                    ("itransformer", teacher_config.get_config(arg + ",model=itransformer"))):
    train_ms, infer_ms, model, variables = timed_train_step(cfg, splits, batch, n)
    models[name] = (model, variables)
    rows[name] = {"train_step_ms": train_ms, "inference_ms": infer_ms}

  teacher_model, t_vars = models["itransformer"]
  hb = runs.host_batch(batch)
  for student_name in ("mlp", "dmlp"):
    d_cfg = distill_config.get_config(arg + f",teacher=itransformer,student={student_name}")
    student = models[student_name][0]
    loss = steps.LossConfig(alpha=1.0, beta=1.0)
    state = create_distill_state(
        student, [teacher_model], make_optimizer(d_cfg.optim, 245, 100), jax.random.PRNGKey(0),
        hb)
    online = steps.jit_distill_step(student, [teacher_model], loss=loss, pred_len=_PRED_LEN.value)
    box = {"state": state}

    def call_online():
      box["state"], m = online(box["state"], [t_vars], hb)
      return m["loss"]

    preds, hiddens = runs.precompute_teacher_outputs([teacher_model], [t_vars], splits.train
                                                     if len(splits.train) < 4096 else
                                                     splits.val, 256)
    cached = jax.jit(lambda s, b: steps.cached_distill_step(
        s, b, student=student, regressor=Regressor(student.feature_dim), loss=loss,
        pred_len=_PRED_LEN.value), donate_argnums=0)

    def call_cached():
      b = hb | {"teacher_pred": (preds[0][idx],), "teacher_hidden": (hiddens[0][idx],)}
      box["state"], m = cached(box["state"], b)
      return m["loss"]

    rows[student_name]["distill_step_ms"] = _ms(call_online, n)
    rows[student_name]["cached_distill_step_ms"] = _ms(call_cached, n)

  breakdown = component_breakdown(models, hb, n)
  device = jax.devices()[0]
  header = (f"{_DATASET.value}, L=720, H={_PRED_LEN.value}, batch {_BATCH.value}, "
            f"{device.platform} ({device.device_kind}), {os.cpu_count()} CPUs, "
            f"jax {jax.__version__}")
  lines = [header, "", "| model | train_step ms | distill_step ms (teacher online) | "
           "distill_step ms (cached teacher) | inference ms |", "| --- | --- | --- | --- | --- |"]
  for name, r in rows.items():
    fmt = lambda k: f"{r[k]:.2f}" if k in r else "-"
    lines.append(f"| {name} | {fmt('train_step_ms')} | {fmt('distill_step_ms')} | "
                 f"{fmt('cached_distill_step_ms')} | {fmt('inference_ms')} |")
  lines += ["", "Where a cached distill_step's time goes (value and gradient of each part alone):",
            "", "| part | ms |", "| --- | --- |"]
  lines += [f"| {k} | {v:.2f} |" for k, v in breakdown.items()]
  print("\n".join(lines))
  if _OUT.value:
    Path(_OUT.value).parent.mkdir(parents=True, exist_ok=True)
    Path(_OUT.value).write_text(json.dumps(
        {"setting": header, "rows": rows, "breakdown": breakdown}, indent=1))


def component_breakdown(models, batch, repeats) -> dict:
  """Forward + backward of each part of a distillation step, timed alone."""
  out = {}
  y = jnp.asarray(batch["y"][:, -_PRED_LEN.value:])
  for name in ("mlp", "dmlp"):
    model, variables = models[name]

    def student_loss(params, x, target, model=model, variables=variables):
      (pred, _), _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                 x, None, None, train=True, mutable=["batch_stats"])
      return jnp.mean((pred - target) ** 2)

    grad = jax.jit(jax.grad(student_loss))
    x = jnp.asarray(batch["x"])
    out[f"{name} student forward + backward"] = _ms(
        lambda grad=grad, variables=variables, x=x: grad(variables["params"], x, y), repeats)
  teacher_model, _ = models["itransformer"]
  d_t, d_s = teacher_model.feature_dim, models["mlp"][0].feature_dim
  regressor = Regressor(d_s)
  h_t = jnp.ones(batch["x"].shape[:1] + (batch["x"].shape[-1], d_t))
  h_s = jnp.ones(h_t.shape[:-1] + (d_s,))
  reg_params = regressor.init(jax.random.PRNGKey(0), h_t)
  # Inputs are arguments, not closed-over constants, so XLA cannot fold them away.
  reg_grad = jax.jit(jax.grad(lambda p, a, b: jnp.mean((regressor.apply(p, a) - b) ** 2)))
  out[f"regressor {d_t}->{d_s}->{d_s} forward + backward"] = _ms(
      lambda: reg_grad(reg_params, h_t, h_s), repeats)
  loss_grad = jax.jit(jax.grad(lambda ps, pt, hs, ht, target: losses.timedistill_loss(
      ps, pt, hs, ht, target, alpha=1.0, beta=1.0)[0], argnums=(0, 2, 3)))
  args = (y * 1.1, y, h_s * 1.1, h_s, y)
  out["TimeDistill loss value + gradient"] = _ms(lambda: loss_grad(*args), repeats)
  tx = optax.adam(1e-3)
  params = {"student": models["dmlp"][1]["params"], "regressor": reg_params}
  opt_state = tx.init(params)
  update = jax.jit(lambda g, s, p: optax.apply_updates(p, tx.update(g, s, p)[0]))
  out["Adam update (DMLP + regressor)"] = _ms(
      lambda: update(params, opt_state, params), repeats)
  return out


if __name__ == "__main__":
  # The command's flags, defined only when it runs: the experiment modules are imported
  # together (tests, tools) and several flag names recur among them.
  _DATASET = flags.DEFINE_string("dataset", "etth1", "Dataset whose shapes are used.")
  _PRED_LEN = flags.DEFINE_integer("pred_len", 96, "Horizon H.")
  _BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
  _REPEATS = flags.DEFINE_integer("repeats", 50, "Timed calls per figure.")
  _OUT = flags.DEFINE_string("out", "", "JSON file for the figures (optional).")
  app.run(main)
