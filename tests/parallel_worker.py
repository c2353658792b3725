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

  from timedistill_jax import parallel, steps
  from timedistill_jax.data import load_dataset
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
  batch0 = {k: sample[k] for k in ("x", "y", "x_mark", "y_mark")} | {
      "mask": np.ones(B, np.float32)}
  state = create_distill_state(student, [teacher], make_optimizer(optim, 10, 10),
                               jax.random.PRNGKey(0), batch0)
  body = functools.partial(
      steps.distill_step, student=student, teachers=(teacher,),
      regressor=Regressor(student.feature_dim),
      loss=steps.LossConfig(alpha=1.0, beta=1.0), pred_len=H)
  step = par.compile_step(body, num_replicated=2)
  train_body = functools.partial(steps.train_step, model=student, pred_len=H)
  return par, splits, state, step, par.compile_step(train_body), [t_vars]


def global_batches():
  """Three global batches; the last is padded: 5 real rows, 3 masked."""
  from timedistill_jax.data import load_dataset

  splits = load_dataset("synthetic", seq_len=L, label_len=S, pred_len=H)
  out = []
  for start, real in ((0, B), (100, B), (300, 5)):
    idx = np.r_[np.arange(start, start + real), np.zeros(B - real, int)]
    b = splits.train.get_batch(idx)
    out.append({k: b[k] for k in ("x", "y", "x_mark", "y_mark")}
               | {"mask": (np.arange(B) < real).astype(np.float32)})
  return out


def run_mode(mode):
  import jax

  par, _, state, step, train_step, t_vars = setup(mode)
  t_vars = par.replicate(t_vars)
  copy = lambda tree: jax.tree.map(lambda x: jax.numpy.array(x, copy=True), tree)
  kd_state, plain_state = par.replicate(copy(state)), par.replicate(copy(state))
  losses, plain_losses = [], []
  for batch in global_batches():
    placed = par.shard(par.local_rows(batch))
    kd_state, m = step(kd_state, t_vars, placed)
    losses.append([float(m[k]) for k in sorted(m)])
    plain_state, pm = train_step(plain_state, placed)
    plain_losses.append(float(pm["loss"]))
  flat = lambda s: np.concatenate([np.ravel(x) for x in jax.tree.leaves(
      par.unreplicate({"p": s.params, "b": s.batch_stats}))])
  return {"losses": np.array(losses), "params": flat(kd_state),
          "plain_losses": np.array(plain_losses), "plain_params": flat(plain_state)}


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
