"""The training state and the optimiser (Adam with the reference's learning-rate schedules)."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from timedistill_jax.errors import unknown_name
from timedistill_jax.models import init_variables
from timedistill_jax.models.regressor import Regressor

SCHEDULES = ("type1", "type4", "constant", "cosine")


class TrainState(struct.PyTreeNode):
  """Everything a step changes. ``params`` is ``{"model": ..., ["regressors": [...]]}``.

  The teacher is never in here: it is an explicit argument of ``distill_step``.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  def apply_gradients(self, grads, **changes):
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **changes)

  def checkpoint_tree(self) -> dict:
    """The arrays to save (the static optimiser definition is rebuilt from the config)."""
    return {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
            "opt_state": self.opt_state, "rng": self.rng}

  def from_checkpoint_tree(self, tree: dict) -> "TrainState":
    return self.replace(**tree)


def make_schedule(optim_config, steps_per_epoch: int, epochs: int) -> Callable:
  """Learning rate as a function of the optimiser step.

  ``type1`` is the reference's ``adjust_learning_rate``: after epoch e (1-based) the rate becomes
  lr * 0.5 ** (e - 1), so epochs 1 and 2 run at lr and 0-based epoch k >= 1 at lr * 0.5 ** (k - 1).
  ``type4`` (the schedule of the reference's first release, docs/method.md "Training settings"):
  after epoch e the rate becomes lr for e < 3, else lr * 0.9 ** (e - 3), so 0-based epoch k runs
  at lr * 0.9 ** max(k - 3, 0). Both are a constant stretch joined to a staircase decay.
  """
  lr = float(optim_config.lr)
  name = optim_config.schedule
  # (factor, epochs held): 0-based epoch k runs at lr * factor ** max(k - held, 0).
  stepped = {"type1": (0.5, 1), "type4": (0.9, 3)}
  if name in stepped:
    factor, held = stepped[name]
    decay = optax.exponential_decay(lr, transition_steps=steps_per_epoch, decay_rate=factor,
                                    staircase=True)
    return optax.join_schedules([optax.constant_schedule(lr), decay],
                                boundaries=[held * steps_per_epoch])
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "cosine":
    return optax.cosine_decay_schedule(lr, decay_steps=max(1, steps_per_epoch * epochs))
  raise unknown_name("learning-rate schedule", name, SCHEDULES)


def make_optimizer(optim_config, steps_per_epoch: int, epochs: int):
  """Adam as ``torch.optim.Adam`` (L2 weight decay added to the gradient, eps 1e-8)."""
  schedule = make_schedule(optim_config, steps_per_epoch, epochs)
  adam = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
  if optim_config.weight_decay:
    return optax.chain(optax.add_decayed_weights(float(optim_config.weight_decay)), adam)
  return adam


def create_train_state(params, batch_stats, tx, rng) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), rng=rng, tx=tx)


def distill_initializer(student, teachers, sample_batch):
  """``init(rng) -> (params, batch_stats)`` of a student and one regressor per teacher, jitted
  once: run op by op, an initialisation dispatches hundreds of small operations, each compiled
  on its own (seconds on a CPU), and an ensemble initialises many members with it."""
  b = {k: sample_batch[k] for k in ("x", "x_mark", "y_mark", "mask")}
  regressor = Regressor(features=student.feature_dim)
  widths = tuple(teacher.feature_dim for teacher in teachers)

  @jax.jit
  def init(rng):
    init_rng, reg_rng, _ = jax.random.split(rng, 3)
    variables = init_variables(student, b, init_rng)
    regs = []
    for i, width in enumerate(widths):
      dummy = jnp.zeros(b["x"].shape[:1] + (b["x"].shape[-1], width), jnp.float32)
      regs.append(regressor.init(jax.random.fold_in(reg_rng, i), dummy))
    return {"model": variables["params"], "regressors": regs}, variables.get("batch_stats", {})

  return init


def create_distill_state(student, teachers, optimizer, rng, sample_batch, *,
                         initializer=None) -> TrainState:
  """Student and one regressor per teacher, initialised; the teachers are not in here.
  ``initializer``: a ``distill_initializer`` to reuse (the same values)."""
  init = initializer or distill_initializer(student, teachers, sample_batch)
  params, batch_stats = init(rng)
  return create_train_state(params, batch_stats, optimizer, jax.random.split(rng, 3)[2])


def learning_rate(optim_config, steps_per_epoch: int, epochs: int, step: int) -> float:
  """The rate the optimiser uses at ``step`` (for logging)."""
  return float(make_schedule(optim_config, steps_per_epoch, epochs)(step))
