"""The project's own error types.

Every problem a user can cause (a bad config value, a missing or malformed data file, a checkpoint
that does not match) ends in one of these, with a message that names the problem and the fix.
They subclass ``ValueError`` so that code catching the usual Python error keeps working.
"""


class TimeDistillError(ValueError):
  """Base class of every error timedistill_jax raises on purpose."""


class ConfigError(TimeDistillError):
  """A config value is unknown, out of range or inconsistent with the data."""


class DataError(TimeDistillError):
  """A data file is missing, unreadable or holds values we cannot train on."""


class CheckpointError(TimeDistillError):
  """A checkpoint is missing, damaged or does not match the run that wants it."""


def unknown_name(kind: str, name: str, choices) -> ConfigError:
  """The one message for an unknown dataset, model, schedule, ... name."""
  valid = ", ".join(sorted(choices))
  return ConfigError(f"unknown {kind} {name!r}; valid choices: {valid}.")


class NumericsError(TimeDistillError):
  """Training produced a non-finite loss; the message names the step and the loss part."""


def registrar(table: dict, kind: str):
  """A decorator factory ``register(name)`` that adds the decorated object to ``table``."""

  def register(name: str):
    def wrap(obj):
      if name in table:
        raise RuntimeError(f"{kind} {name!r} registered twice")
      table[name] = obj
      return obj

    return wrap

  return register
