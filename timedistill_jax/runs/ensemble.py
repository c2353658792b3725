"""Ensembles: many runs of one kind trained as one program, ``jax.vmap`` over a member axis.

``config.ensemble`` lists what the members vary: ``seeds`` (initialisation, data order, dropout
stream), ``lr``, and for distillation ``alpha``, ``beta`` and ``variants`` (the paper's loss
ablation: ``full``, ``no_sup``, ``no_scale``, ``no_period``, ``no_feature``, ``no_prediction``).
Each is a comma-separated list; the members are every combination (seeds outermost). All members
share the data, the teachers and their cached outputs, and one compiled step.

Member ``m`` computes what the single run of ``member_config(config, members[m])`` computes:
its own initial state and data order, its own BatchNorm statistics, learning-rate schedule and
loss weights (traced, when the members' differ), its own early stopping (a member that has
stopped is no longer looked at, its best state kept, while the others go on).
"""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from timedistill_jax.configs import common
from timedistill_jax.configs.sweeps import ABLATION_VARIANTS
from timedistill_jax.data.device import split_offsets, window_starts
from timedistill_jax.errors import ConfigError
from timedistill_jax.runs.assembly import Evaluator, Run, optimizer_for

KEYS = common.ENSEMBLE_KEYS
ensemble_config = common.ensemble_config
VARIANTS = {v.name: dict(v.distill) for v in ABLATION_VARIANTS}
_LOSS_KEYS = ("alpha", "beta", "sup_weight", "scale_weight", "period_weight")


def is_ensemble(config) -> bool:
  group = config.get("ensemble", {})
  return any(str(group.get(key, "")).strip() for key in KEYS)


def _values(config, key: str, cast):
  raw = config.ensemble.get(key, "")
  items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
  items = [str(v).strip() for v in items if str(v).strip()]
  try:
    values = [cast(v) for v in items]
  except ValueError:
    raise ConfigError(f"config.ensemble.{key} must be a comma-separated list of "
                      f"{'integers' if cast is int else 'numbers'}, got {raw!r}.") from None
  if len(set(values)) != len(values):
    raise ConfigError(f"config.ensemble.{key} lists a value twice: {raw!r}.")
  return values


def members(config) -> list:
  """The members' settings, every combination of the lists (seeds outermost)."""
  kind = config.get("kind", "student")
  distill = kind == "distill"
  for key in ("alpha", "beta", "variants"):
    if not distill and str(config.ensemble.get(key, "")).strip():
      raise ConfigError(f"config.ensemble.{key} applies to distillation runs only "
                        f"(this run's kind is {kind!r}).")
  seeds = _values(config, "seeds", int) or [config.seed]
  lrs = _values(config, "lr", float) or [float(config.optim.lr)]
  for s in seeds:
    if s < 0:
      raise ConfigError(f"config.ensemble.seeds must be integers >= 0, got {s}.")
  for lr in lrs:
    if not lr > 0 or lr == float("inf"):
      raise ConfigError(f"config.ensemble.lr must be finite numbers > 0, got {lr}.")
  grid = [seeds, lrs]
  if distill:
    alphas = _values(config, "alpha", float) or [float(config.distill.alpha)]
    betas = _values(config, "beta", float) or [float(config.distill.beta)]
    variants = [v.strip() for v in str(config.ensemble.variants).split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
      raise ConfigError(f"unknown config.ensemble.variants {unknown[0]!r}; valid choices: "
                        f"{', '.join(VARIANTS)}.")
    for value in alphas + betas:
      if not value >= 0 or value == float("inf"):
        raise ConfigError(f"config.ensemble.alpha / beta must be finite numbers >= 0, "
                          f"got {value}.")
    grid += [alphas, betas, variants or ["full"]]
  names = ("seed", "lr", "alpha", "beta", "variant")
  return [dict(zip(names, combo)) for combo in itertools.product(*grid)]


def member_config(config, member: dict) -> ml_collections.ConfigDict:
  """The config of the single run a member equals (no ensemble)."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.seed = member["seed"]
  out.optim.lr = member["lr"]
  if "alpha" in member:
    out.distill.alpha, out.distill.beta = member["alpha"], member["beta"]
    for key, value in VARIANTS[member["variant"]].items():
      out.distill[key] = value
  out.ensemble = ensemble_config()
  return out


def _loss_weights(configs) -> dict:
  """Each member's loss weights, ``[M]`` float32 arrays; ``{}`` where all members agree (the
  static weights of a single run then apply, with their exact arithmetic)."""
  if "distill" not in configs[0]:
    return {}
  table = [[float(c.distill.get(k, 1.0)) for k in _LOSS_KEYS] for c in configs]
  if all(row == table[0] for row in table):
    return {}
  return {k: np.asarray([row[i] for row in table], np.float32) for i, k in enumerate(_LOSS_KEYS)}


def _member_body(body, weighted: bool):
  """The step of one member, its loss weights travelling with its state (never updated)."""
  def step(carry, *args, axis_name=None):
    state, weights = carry
    extra = {"weights": weights} if weighted else {}
    state, metrics = body(state, *args, axis_name=axis_name, **extra)
    return (state, weights), metrics
  return step


def _optimizer(config, splits, configs):
  """One optimiser for every member; where their learning rates differ, each member's updates
  are scaled by lr / config.optim.lr (exactly 1 for a member at the config's rate)."""
  tx = optimizer_for(config, splits)
  lrs = [float(c.optim.lr) for c in configs]
  if all(lr == float(config.optim.lr) for lr in lrs):
    return tx, None
  scales = np.asarray([lr / float(config.optim.lr) for lr in lrs], np.float32)
  return optax.chain(tx, optax.inject_hyperparams(optax.scale)(step_size=1.0)), scales


def build(parts, config, splits, par, clock=None) -> Run:
  """The ``Run`` of ``config``'s ensemble from its kind's ``parts``."""
  specs = members(config)
  configs = [member_config(config, m) for m in specs]
  if len(specs) % par.member_devices:
    raise ConfigError(f"{len(specs)} ensemble members do not divide over "
                      f"config.parallel.member_devices = {par.member_devices}.")
  tx, lr_scales = _optimizer(config, splits, configs)
  states = [parts.init_state(c, tx) for c in configs]
  state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  if lr_scales is not None:
    inner, injected = state.opt_state
    injected.hyperparams["step_size"] = jnp.asarray(lr_scales)
    state = state.replace(opt_state=(inner, injected))
  weights = _loss_weights(configs)
  compiled = par.compile_member_loop(_member_body(parts.body, bool(weights)),
                                     num_replicated=1 + len(parts.replicated), clock=clock)
  placed_data = par.replicate(parts.data)
  # The weights travel with the donated state through every call, so each call hands on the
  # buffers the last one returned.
  placed_weights = [par.place_members(weights)]
  evaluate = Evaluator(parts.model, config, splits, par, data=parts.data, clock=clock,
                       members=len(specs))
  offsets = split_offsets(splits)

  def step_fn(state, start, mask, count):
    (state, placed_weights[0]), metrics = compiled(
        (state, placed_weights[0]), *parts.replicated, placed_data,
        par.shard_member_block(start), par.shard_member_block(mask),
        # Every member runs the call's steps: one that has stopped goes on in its share of the
        # step, and is ignored (its best state is kept), which costs less than freezing it.
        par.replicate(np.int32(np.max(count))))
    return state, metrics

  def windows(epoch):
    blocks = [window_starts(splits.train, offsets["train"], config.data.batch_size,
                            shuffle=True, seed=c.seed, epoch=epoch) for c in configs]
    return np.stack([b[0] for b in blocks]), np.stack([b[1] for b in blocks])

  return Run(model=parts.model, state=state, step_fn=step_fn, evaluate=evaluate,
             windows=windows, place=par.place_members, unplace=jax.device_get, offsets=offsets,
             metadata=parts.metadata, members=specs, member_configs=configs)


def member_tree(tree, m: int):
  """Member ``m``'s slice of a stacked (host) tree."""
  return jax.tree.map(lambda x: np.asarray(x)[m], tree)


def select_members(improved, new, old):
  """``new`` where ``improved[m]``, else ``old``, member by member (host trees)."""
  improved = np.asarray(improved)
  return jax.tree.map(lambda n, o: np.where(
      improved.reshape((-1,) + (1,) * (np.ndim(n) - 1)), n, o), new, old)
