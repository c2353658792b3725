"""A deterministic crash for the resume tests: ``TIMEDISTILL_CRASH_AT=step:N`` or ``save:K``.

``step:N`` SIGKILLs the process right after global optimiser step N (1-based) is dispatched;
``save:K`` SIGKILLs it inside the K-th checkpoint save of this process, after Orbax has written
the arrays and before the metadata with their hashes is final. Unset, it costs one
dictionary lookup per step. See docs/reliability.md.
"""

import os
import signal

VARIABLE = "TIMEDISTILL_CRASH_AT"
_saves = 0


def _target(kind: str) -> int:
  value = os.environ.get(VARIABLE, "")
  name, _, n = value.partition(":")
  return int(n) if name == kind and n.isdigit() else 0


def _kill() -> None:
  os.kill(os.getpid(), signal.SIGKILL)


def after_step(step: int) -> None:
  if step == _target("step"):
    _kill()


def during_save() -> None:
  global _saves
  _saves += 1
  if _saves == _target("save"):
    _kill()
