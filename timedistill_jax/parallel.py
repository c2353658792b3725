"""Data parallelism: one per-device step body, run under ``jit``, ``pmap`` or ``shard_map``.

Every step in ``steps.py`` is written once for one device, with an
``axis_name`` argument: with it, gradients, losses and metrics are averaged over the devices
(weighted by their real windows, see ``steps.device_weight``), BatchNorm adds its statistics over
the devices (``layers/batchnorm.py``) and evaluation adds its error sums. So N devices compute what
one device computes on the whole global batch, the padded last batch included.

``compile_loop`` compiles a step body as a loop over many batches in one call
(``steps.run_steps``): the data is replicated on every device once, and each call takes only the
first rows of its windows, ``[K, B]``, split over the devices along ``B`` (``shard_block``).

``config.parallel.mode``:

* ``none``: plain ``jax.jit`` on the default device;
* ``pmap``: ``jax.pmap(..., axis_name="data")`` over every device (of every process); the state
  carries a leading device axis;
* ``shard_map``: ``jax.shard_map`` over a 1-D mesh named ``data``, under ``jax.jit``; the state is
  a replicated global array.

Several hosts: ``initialize(config.parallel)`` calls ``jax.distributed.initialize``; each process
then reads its own contiguous slice of every global batch (``shard_block``).
"""

import functools
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from timedistill_jax import steps
from timedistill_jax.errors import ConfigError, unknown_name
from timedistill_jax.timing import PhaseClock

MODES = ("none", "pmap", "shard_map")
AXIS = "data"
MEMBERS = "members"  # the mesh axis an ensemble's members are split over


def initialize(parallel_config) -> None:
  """Starts multi-process JAX when the config or the environment names a coordinator.

  ``coordinator_address`` / ``num_processes`` / ``process_id`` come from the config, else from
  ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``;
  ``auto_initialize=True`` lets JAX detect the cluster itself (TPU VMs, SLURM).
  """
  address = parallel_config.get("coordinator_address", "") or os.environ.get(
      "JAX_COORDINATOR_ADDRESS", "")
  auto = parallel_config.get("auto_initialize", False)
  if not address and not auto:
    return
  if jax.distributed.is_initialized():
    return
  if address:
    num = int(parallel_config.get("num_processes", 0) or os.environ.get("JAX_NUM_PROCESSES", 0))
    pid = int(parallel_config.get("process_id", -1)
              if parallel_config.get("process_id", -1) >= 0
              else os.environ.get("JAX_PROCESS_ID", -1))
    if num < 1 or pid < 0:
      raise ConfigError(
          f"multi-process run with coordinator {address!r} needs num_processes >= 1 and "
          "process_id >= 0: set --config.parallel.num_processes and "
          "--config.parallel.process_id (or JAX_NUM_PROCESSES / JAX_PROCESS_ID).")
    # CPU collectives across processes (harmless on GPU/TPU, which bring their own); must be
    # set before anything starts the backend.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
  else:
    jax.distributed.initialize()


class DataParallel:
  """Placement of states and batches, and compilation of step bodies, for one mode.

  ``member_devices`` > 1 (``shard_map`` only) lays the devices out as a 2-D mesh
  ``(members, data)``: an ensemble's members are split over the first axis, each group of
  devices running its members on the whole batch, split over the second.
  """

  def __init__(self, mode: str = "none", member_devices: int = 1):
    if mode not in MODES:
      raise unknown_name("parallel mode (config.parallel.mode)", mode, MODES)
    self.mode = mode
    # "none" runs on this process's first device (also where a multi-process run computes
    # helpers such as the teacher cache).
    self.devices = jax.devices() if mode != "none" else jax.local_devices()[:1]
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    self.member_devices = member_devices
    if member_devices > 1 and (mode != "shard_map" or len(self.devices) % member_devices):
      raise ConfigError(
          f"config.parallel.member_devices = {member_devices} needs parallel.mode 'shard_map' "
          f"and a device count it divides ({len(self.devices)} devices, mode {mode!r}).")
    self.mesh = None
    if mode == "shard_map":
      grid = np.array(self.devices).reshape(member_devices, -1)
      self.mesh = Mesh(grid, (MEMBERS, AXIS)) if member_devices > 1 else Mesh(grid[0], (AXIS,))

  @property
  def axis_name(self):
    return None if self.mode == "none" else AXIS

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def data_devices(self) -> int:
    """The devices a batch is split over."""
    return self.num_devices // self.member_devices

  @property
  def is_main_process(self) -> bool:
    return jax.process_index() == 0

  def check_batch_size(self, batch_size: int, what: str = "config.data.batch_size") -> None:
    n = self.data_devices
    per_process = n // jax.process_count() if self.member_devices == 1 else n
    if batch_size % n or (batch_size // jax.process_count()) % max(per_process, 1):
      raise ConfigError(
          f"{what} = {batch_size} does not divide over {n} devices "
          f"(mode {self.mode!r}); use a multiple of {n}.")

  def round_up(self, batch_size: int) -> int:
    """An evaluation batch size that divides over the devices (the extra rows are masked)."""
    return -(-batch_size // self.data_devices) * self.data_devices

  def _member_spec(self, *rest) -> P:
    """The spec of an array with a leading member axis: split over the member devices."""
    return P(MEMBERS if self.member_devices > 1 else None, *rest)

  def place_members(self, tree):
    """An ensemble's stacked host or device pytree (leading member axis) -> its devices."""
    if self.mode == "none":
      return jax.device_put(tree, self.devices[0])
    if self.mode != "shard_map":
      raise ConfigError("an ensemble runs under parallel.mode 'none' or 'shard_map'.")
    sharding = NamedSharding(self.mesh, self._member_spec())
    return jax.tree.map(lambda x: jax.make_array_from_callback(
        np.shape(x), sharding, lambda idx, x=np.asarray(jax.device_get(x)): x[idx]), tree)

  def shard_member_block(self, block):
    """A host array ``[M, K, B]`` (K batches of B windows a member) -> members over the member
    devices, ``B`` over the data devices (one process)."""
    block = np.asarray(block)
    if self.mode == "none":
      return jax.device_put(block, self.devices[0])
    spec = self._member_spec(*([None, AXIS] if block.ndim == 3 else []))
    return jax.make_array_from_callback(block.shape, NamedSharding(self.mesh, spec),
                                        lambda idx: block[idx])

  # -- placement ------------------------------------------------------------------------------

  def shard_block(self, block):
    """A global host array ``[K, B]`` (K batches of B windows) -> this process's columns, split
    over the devices along ``B`` in the layout the compiled loops take."""
    block = np.asarray(block)
    if self.mode == "none":  # this process's own device, whatever the other processes do
      return jax.device_put(block, self.devices[0])
    n = jax.process_count()
    if n > 1:
      size = block.shape[1] // n
      block = block[:, jax.process_index() * size:(jax.process_index() + 1) * size]
    if self.mode == "pmap":  # [K, B] -> [k, K, B / k], one slice of columns a device
      k = len(self.local_devices)
      parts = np.moveaxis(block.reshape(block.shape[0], k, -1), 1, 0)
      sharding = NamedSharding(Mesh(np.array(self.local_devices), (AXIS,)), P(AXIS))
      return jax.device_put(parts, sharding)
    return jax.make_array_from_process_local_data(NamedSharding(self.mesh, P(None, AXIS)),
                                                  block)

  def replicate(self, tree):
    """A host or single-device pytree -> replicated on every device.

    Not ``flax.jax_utils.replicate``: that places copies on this process's devices only and
    knows nothing of a ``shard_map`` mesh; these work across processes in both modes.
    """
    if self.mode == "none":
      return jax.device_put(tree, self.devices[0])
    if self.mode == "pmap":  # a leading axis of local devices, one copy on each
      k = len(self.local_devices)
      sharding = NamedSharding(Mesh(np.array(self.local_devices), (AXIS,)), P(AXIS))
      return jax.tree.map(lambda x: jax.device_put(
          np.broadcast_to(np.asarray(x), (k,) + np.shape(x)), sharding), jax.device_get(tree))
    sharding = NamedSharding(self.mesh, P())
    return jax.tree.map(lambda x: jax.make_array_from_callback(
        np.shape(x), sharding, lambda idx, x=np.asarray(jax.device_get(x)): x[idx]), tree)

  def unreplicate(self, tree):
    """A replicated pytree -> host numpy arrays (one copy)."""
    if self.mode == "none":
      return jax.device_get(tree)
    if self.mode == "pmap":  # device 0's shard keeps a leading axis of length 1
      return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree)
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)

  def first(self, tree):
    """Metrics of a pmapped step carry a device axis; every entry is the same."""
    return jax.tree.map(lambda x: x[0], tree) if self.mode == "pmap" else tree

  # -- compilation ----------------------------------------------------------------------------

  def compile_loop(self, body, *, num_replicated: int = 1, donate: bool = True,
                   clock: PhaseClock | None = None):
    """``body(carry, *replicated, batch, axis_name=...) -> (carry, out)`` run over many batches
    in one call (``steps.run_steps``), compiled for the mode.

    The result takes ``(carry, *replicated, data, start, mask, count)``: the carry and the
    ``num_replicated - 1`` further arguments and ``data`` placed by ``replicate``, ``start`` and
    ``mask`` by ``shard_block``, ``count`` (the batches to run) by ``replicate``. It returns
    ``(carry, outs)``, every leaf of ``outs`` stacked to ``[K, ...]`` and the same on every
    device. Compiled ahead of time at the first call; ``clock`` counts that as ``compile``.
    """
    loop = _many_steps(steps.run_steps, body)
    donate_argnums = (0,) if donate else ()
    if self.mode == "none":
      return _AheadOfTime(jax.jit(loop, donate_argnums=donate_argnums), clock)
    fn = functools.partial(loop, axis_name=AXIS)
    if self.mode == "pmap":
      pmapped = _AheadOfTime(jax.pmap(fn, axis_name=AXIS, donate_argnums=donate_argnums), clock,
                             ahead=False)

      def call(*args):
        carry, outs = pmapped(*args)
        return carry, self.first(outs)

      return call
    in_specs = (P(),) * (num_replicated + 1) + (P(None, AXIS), P(None, AXIS), P())
    mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=(P(), P()))
    return _AheadOfTime(jax.jit(mapped, donate_argnums=donate_argnums), clock)


  def compile_member_loop(self, body, *, num_replicated: int = 1, donate: bool = True,
                          clock: PhaseClock | None = None):
    """:meth:`compile_loop` for an ensemble (``steps.run_member_steps``): the carry and the
    outputs have a leading member axis, ``start`` and ``mask`` are ``[M, K, B]`` (placed by
    :meth:`place_members` and :meth:`shard_member_block`), ``count`` a scalar (``replicate``)."""
    loop = _many_steps(steps.run_member_steps, body)
    donate_argnums = (0,) if donate else ()
    if self.mode == "none":
      return _AheadOfTime(jax.jit(loop, donate_argnums=donate_argnums), clock)
    if self.mode != "shard_map":
      raise ConfigError("an ensemble runs under parallel.mode 'none' or 'shard_map'.")
    member = self._member_spec()
    block = self._member_spec(None, AXIS)
    in_specs = (member,) + (P(),) * num_replicated + (block, block, P())
    mapped = jax.shard_map(functools.partial(loop, axis_name=AXIS), mesh=self.mesh,
                           in_specs=in_specs, out_specs=(member, member))
    return _AheadOfTime(jax.jit(mapped, donate_argnums=donate_argnums), clock)


def _many_steps(runner, body):
  """``runner`` (``steps.run_steps`` or ``steps.run_member_steps``) of ``body`` as a function of
  ``(carry, *replicated, data, start, mask, count)``, the form the compiled loops take."""
  def loop(carry, *rest, axis_name=None):
    *args, data, start, mask, count = rest
    return runner(body, carry, *args, data=data, start=start, mask=mask, count=count,
                  axis_name=axis_name)
  return loop


class _AheadOfTime:
  """A jitted function compiled at its first call for the arguments given then
  (``lower(...).compile()``), so that a run can count compilation apart from its steps.

  A pmapped one is called as it is (its ahead-of-time form takes global shapes, which differ
  from what each process passes); its first call, compilation and all, counts as ``compile``.
  """

  def __init__(self, fn, clock: PhaseClock | None, *, ahead: bool = True):
    self._fn, self._clock, self._ahead, self._compiled = fn, clock or PhaseClock(), ahead, None

  def __call__(self, *args):
    if self._compiled is None:
      with self._clock.phase("compile"):
        if self._ahead:
          self._compiled = self._fn.lower(*args).compile()
        else:
          self._compiled = self._fn
          return jax.block_until_ready(self._fn(*args))
    return self._compiled(*args)
