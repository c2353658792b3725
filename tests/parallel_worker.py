"""Runs steps under each parallel mode; started by tests/test_parallel.py in a subprocess.

The device flags (fake CPU devices, multi-process start-up) must be set before JAX starts, so
this runs as its own process:

  python tests/parallel_worker.py steps OUT.npz            # none vs pmap vs shard_map
  python tests/parallel_worker.py process I N PORT OUT.npz # one of N processes (pmap over all)
"""

import functools
import sys

import numpy as np

L, S, H, B = 48, 8, 12, 8


def setup(mode):
  import jax
  import ml_collections

  from timedistill_jax import parallel, runs, steps
  from timedistill_jax.data import load_dataset
  from timedistill_jax.data.device import device_data
  from timedistill_jax.models import build_model
  from timedistill_jax.models.regressor import Regressor
  from timedistill_jax.train_state import create_distill_state, make_optimizer

  par = parallel.DataParallel(mode)
  splits = load_dataset("synthetic", seq_len=L, label_len=S, pred_len=H)
  dims = dict(seq_len=L, label_len=S, pred_len=H, enc_in=splits.num_channels)
  student = build_model(ml_collections.ConfigDict(dict(name="dmlp", d_model=16)), **dims,
                        axis_name=par.axis_name)
  teacher = build_model(ml_collections.ConfigDict(
      dict(name="itransformer", d_model=16, d_ff=16, n_heads=2, e_layers=1)), **dims)
  sample = splits.train.get_batch(np.arange(B))
  t_vars = teacher.init(jax.random.PRNGKey(7), sample["x"], sample["x_mark"], sample["y_mark"])
  optim = ml_collections.ConfigDict(dict(lr=0.01, schedule="type1", weight_decay=0.0))
  state = create_distill_state(student, [teacher], make_optimizer(optim, 10, 10),
                               jax.random.PRNGKey(0), runs.sample_batch(splits, B))
  kw = dict(student=student, regressor=Regressor(student.feature_dim),
            loss=steps.LossConfig(alpha=1.0, beta=1.0), pred_len=H)
  data = device_data(splits)
  preds, hiddens = runs.precompute_teacher_outputs([teacher], [t_vars], splits.train, 64)
  loops = {
      "online": runs.loop_fn(par, functools.partial(steps.distill_step, teachers=(teacher,),
                                                    **kw), data, par.replicate([t_vars])),
      "cached": runs.loop_fn(par, functools.partial(steps.cached_distill_step, **kw),
                             data.with_teacher_outputs(preds, hiddens)),
      "plain": runs.loop_fn(par, functools.partial(steps.train_step, model=student,
                                                   pred_len=H), data),
  }
  config = ml_collections.ConfigDict(dict(data=dict(pred_len=H, eval_batch_size=64,
                                                    features="M"), train=dict()))
  return par, state, loops, runs.Evaluator(student, config, splits, par)


def blocks():
  """Three global batches of training windows as ``[3, B]`` blocks of rows; the last batch is
  padded: 5 real rows, 3 masked."""
  start = np.stack([np.arange(0, B), np.arange(100, 100 + B),
                    np.r_[np.arange(300, 305), np.zeros(B - 5, int)]]).astype(np.int32)
  mask = (np.arange(B) < np.array([[B], [B], [5]])).astype(np.float32)
  return start, mask


def run_mode(mode):
  import jax

  from timedistill_jax import runs

  par, state, loops, evaluate = setup(mode)
  copy = lambda tree: jax.tree.map(lambda x: jax.numpy.array(x, copy=True), tree)
  flat = lambda s: np.concatenate([np.ravel(x) for x in jax.tree.leaves(
      par.unreplicate({"p": s.params, "b": s.batch_stats}))])
  out = {}
  for name, loop in loops.items():
    new, metrics = loop(par.replicate(copy(state)), *blocks(), 3)  # three steps in one call
    out[f"{name}_losses"] = np.stack([metrics[k] for k in sorted(metrics)], 1)
    out[f"{name}_params"] = flat(new)
    if name == "plain":
      test = evaluate(runs.eval_variables(new), "test")  # new is placed already
      out["test"] = np.array([test[k] for k in sorted(test)])
  return out


def main():
  kind, out = sys.argv[1], sys.argv[-1]
  if kind == "steps":
    import jax

    assert jax.device_count() == 4, jax.devices()
    from timedistill_jax import parallel
    from timedistill_jax.errors import ConfigError

    results = {mode: run_mode(mode) for mode in ("none", "pmap", "shard_map")}
    try:
      parallel.DataParallel("pmap").check_batch_size(30)
      refused = ""
    except ConfigError as e:
      refused = str(e)
    np.savez(out, refused=np.array(refused),
             **{f"{mode}_{k}": v for mode, r in results.items() for k, v in r.items()})
  elif kind == "process":
    pid, num, port = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    import jax
    import ml_collections

    from timedistill_jax import parallel

    parallel.initialize(ml_collections.ConfigDict(dict(
        coordinator_address=f"127.0.0.1:{port}", num_processes=num, process_id=pid)))
    assert jax.process_count() == num
    r = run_mode("pmap")
    if pid == 0:
      np.savez(out, **r)


if __name__ == "__main__":
  main()
