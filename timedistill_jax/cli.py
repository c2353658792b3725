"""The small command lines (``timedistill_jax.forecast``, ``timedistill_jax.export``): argparse,
with every user error, its own mistakes included, as one line ``error: ...`` and exit status 2,
never a traceback (as ``python -m timedistill_jax``)."""

import argparse
import sys

from timedistill_jax.errors import ConfigError, TimeDistillError


class Parser(argparse.ArgumentParser):
  """argparse, whose mistakes (a missing option, an unknown one) raise ``ConfigError``."""

  def __init__(self, prog: str, usage_line: str):
    super().__init__(prog=prog)
    self.usage_line = usage_line

  def error(self, message):  # argparse's own prints a usage block and exits
    raise ConfigError(f"{message} ({self.usage_line})")


def main(run, argv, what: str) -> int:
  """Prints ``run(argv)``'s summary; a user error is one line and exit status 2."""
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every restore at INFO
  try:
    print(run(sys.argv[1:] if argv is None else argv))
  except TimeDistillError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # an output that cannot be written (no permission, a full disk)
    print(f"error: cannot write the {what}: {e}", file=sys.stderr)
    return 2
  return 0
