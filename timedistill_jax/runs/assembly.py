"""What every run kind shares: the data a step sees, compiled loops of steps, evaluation, and the
``Run`` the loop drives.

A run kind provides ``Parts`` (its model, step body, data and how to make a state); ``single``
turns them into the ``Run`` of one model, ``ensemble.build`` into the ``Run`` of many. Either
way the loop sees one interface with a member axis: a single run is a run of one member.
"""

import dataclasses
import functools
from typing import Callable

import jax
import numpy as np

from timedistill_jax import parallel, steps
from timedistill_jax.data import load_dataset, num_batches
from timedistill_jax.data.device import (DeviceData, device_data, pad_batches, split_offsets,
                                         window_starts)
from timedistill_jax.metrics import MetricAccumulator
from timedistill_jax.models import build_model, init_variables
from timedistill_jax.train_state import create_train_state, make_optimizer

STEP_KEYS = ("x", "y", "x_mark", "y_mark", "mask")


def host_batch(batch: dict) -> dict:
  """The arrays a step takes (window indices stay on the host)."""
  return {k: batch[k] for k in STEP_KEYS}


def load_splits(config):
  d = config.data
  return load_dataset(
      d.name, seq_len=d.seq_len, label_len=d.label_len, pred_len=d.pred_len,
      data_dir=d.data_dir or None, features=d.features, target=d.target, freq=d.freq,
      path=d.path or None, split=d.get("split", "reference"),
      val_fraction=d.get("val_fraction", 0.1))


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


def optimizer_for(config, splits):
  return make_optimizer(config.optim, steps_per_epoch(config, splits), config.train.epochs)


def eval_variables(state) -> dict:
  return steps.model_variables(state.params["model"], state.batch_stats)


@dataclasses.dataclass
class Parts:
  """What a run kind provides, before anything is compiled."""

  model: object  # the Flax module that is evaluated and saved (teacher or student)
  body: Callable  # the step: (state, *replicated, batch, *, axis_name) -> (state, metrics)
  data: DeviceData  # the splits' rows (and cached teacher outputs), host arrays
  replicated: tuple  # further step arguments, placed on every device (the teachers' variables)
  init_state: Callable  # (config, tx) -> the initial TrainState of a run with this config
  metadata: dict  # extra JSON for checkpoints and results (teacher info, ...)


@dataclasses.dataclass
class Run:
  """What the loop needs: every callable has a leading member axis (one member for a single
  run)."""

  model: object
  state: object  # TrainState on one device; an ensemble's stacks its members (the loop places it)
  # (placed state, start [M, K, B], mask [M, K, B], count [M]) -> (state, metrics {name: [M, K]}):
  # member m runs count[m] steps on the training windows starting at rows start[m] (host arrays)
  step_fn: Callable
  evaluate: Callable  # (placed variables, split name) -> a list of M metric dicts
  windows: Callable  # epoch -> (start, mask) [M, nb, B]: each member's batches of that epoch
  place: Callable  # a host (or single-device) state -> placed as step_fn takes it
  unplace: Callable  # a placed state (or part of it) -> host arrays, one copy
  offsets: dict  # the first row of each split in the placed data
  metadata: dict
  members: list | None = None  # an ensemble's member settings; None for a single run
  member_configs: list = dataclasses.field(default_factory=list)  # one config a member


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
  ``members``: the number of stacked variables an ensemble evaluates at once (a list of
  metrics back); None for one model (one metrics dict back).
  """

  def __init__(self, model, config, splits, par=None, *, data=None, clock=None,
               split_names=("val", "test"), members: int | None = None):
    par = par or parallel.DataParallel("none")
    self.splits, self.offsets, self.members, self.par = splits, split_offsets(splits), members, par
    self.batch_size = par.round_up(config.data.eval_batch_size)
    self.max_batches = config.train.get("max_eval_batches", 0)
    self.num = max(self._num_batches(name) for name in split_names)
    body = steps.as_loop_body(functools.partial(
        steps.eval_step, model=model, pred_len=config.data.pred_len, f_dim=f_dim_of(config)))
    data = device_data(splits) if data is None else data
    if members is None:
      self._fn = loop_fn(par, body, data, clock=clock, donate=False)
    else:
      compiled = par.compile_member_loop(body, donate=False, clock=clock)
      placed = par.replicate(data)
      self._fn = lambda v, start, mask, count: compiled(
          v, placed, *(par.shard_member_block(np.broadcast_to(a, (members,) + np.shape(a)))
                       for a in (start, mask)), par.replicate(np.int32(count)))

  def _num_batches(self, name: str) -> int:
    n = num_batches(getattr(self.splits, name), self.batch_size)
    return min(n, self.max_batches) if self.max_batches else n

  def __call__(self, variables, split: str):
    if self._num_batches(split) > self.num:
      raise ValueError(f"this Evaluator was built for {self.num} batches a split; pass "
                       f"split_names=(..., {split!r}) to evaluate the {split} split.")
    start, mask = window_starts(getattr(self.splits, split), self.offsets[split],
                                self.batch_size)
    count = self._num_batches(split)
    start, mask = pad_batches(start[:count], mask[:count], self.num)
    _, sums = self._fn(variables, start, mask, count)
    sums = jax.device_get(sums)
    if self.members is None:
      return _accumulate(sums, count)
    return [_accumulate({k: v[m] for k, v in sums.items()}, count)
            for m in range(self.members)]


def _accumulate(sums: dict, count: int) -> dict:
  acc = MetricAccumulator()
  for b in range(count):
    acc.add({k: v[b] for k, v in sums.items()})
  return acc.result()


def single(parts: Parts, config, splits, par, clock=None) -> Run:
  """The ``Run`` of one model: its loop and evaluator behind the member-axis interface."""
  inner = loop_fn(par, parts.body, parts.data, *parts.replicated, clock=clock)
  evaluate = Evaluator(parts.model, config, splits, par, data=parts.data, clock=clock)
  offsets = split_offsets(splits)

  def step_fn(state, start, mask, count):
    state, metrics = inner(state, start[0], mask[0], int(count[0]))
    return state, {k: v[None] for k, v in metrics.items()}

  def windows(epoch):
    start, mask = window_starts(splits.train, offsets["train"], config.data.batch_size,
                                shuffle=True, seed=config.seed, epoch=epoch)
    return start[None], mask[None]

  return Run(model=parts.model, state=parts.init_state(config, optimizer_for(config, splits)),
             step_fn=step_fn, evaluate=lambda v, split: [evaluate(v, split)], windows=windows,
             place=par.replicate, unplace=par.unreplicate, offsets=offsets,
             metadata=parts.metadata, member_configs=[config])


def student_parts(config, splits, par: parallel.DataParallel, clock=None) -> Parts:
  """A model trained on the data alone (the student baseline, or a teacher)."""
  del clock
  model = model_for(config, splits, par)
  init = jax.jit(functools.partial(init_variables, model, sample_batch(splits)))

  def init_state(config, tx):
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    variables = init(init_rng)
    return create_train_state({"model": variables["params"]}, variables.get("batch_stats", {}),
                              tx, state_rng)

  body = functools.partial(steps.train_step, model=model, pred_len=config.data.pred_len,
                           f_dim=f_dim_of(config))
  return Parts(model=model, body=body, data=device_data(splits), replicated=(),
               init_state=init_state, metadata={})
