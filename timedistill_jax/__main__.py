r"""Command line: ``python -m timedistill_jax --config FILE.py:ARGS --workdir DIR``.

  python -m timedistill_jax --config configs/student.py:dataset=etth1,pred_len=96 \
      --workdir runs/etth1_dmlp_96 --config.optim.lr=0.005

The config is locked: an override of a key that does not exist is an error. Every problem a user
can cause ends in one line naming it and the fix, with exit status 2.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags


def _config_file_root(argv) -> None:
  """Puts the folder holding ``configs/`` on sys.path, so config files import ``configs.common``
  wherever the command is run from."""
  for i, arg in enumerate(argv):
    value = None
    if arg.startswith("--config="):
      value = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
    if value:
      path = os.path.abspath(value.split(":", 1)[0])
      root = os.path.dirname(os.path.dirname(path))
      if root not in sys.path:
        sys.path.insert(0, root)


_config_file_root(sys.argv)
_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for logs, checkpoints and results.")
flags.mark_flags_as_required(["config", "workdir"])


def _one_line(e: BaseException) -> str:
  """The most telling message in a chain of exceptions (config_flags wraps the config's own)."""
  chain = [e]
  while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
    chain.append(chain[-1].__cause__ or chain[-1].__context__)
  hints = [c for c in chain if "Did you mean" in str(c)]
  if hints:  # a misspelt --config.a.b override
    text = str(hints[0]).replace("\\n", " ").replace("\n", " ").replace("\\", "")
    text = text.replace("'", "")
    return "unknown config key " + " ".join(text.split())
  return " ".join(str(chain[-1]).split()) or type(chain[-1]).__name__


def parse_flags(argv):
  """absl's parsing, with a bad config (argument, file or override) as one line, exit 2."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, ValueError, AttributeError, KeyError, TypeError) as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    print("usage: python -m timedistill_jax --config configs/FILE.py:key=value,... "
          "--workdir DIR [--config.group.key=value ...]", file=sys.stderr)
    sys.exit(2)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  from timedistill_jax.errors import TimeDistillError
  from timedistill_jax.run import run

  try:
    config = _CONFIG.value
    config.get("kind")  # a missing or broken file fails here, not before
  except OSError as e:  # config_flags reports a missing or broken file only when it is used
    print(f"error: cannot load the config file: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(2)
  try:
    run(config, _WORKDIR.value)
  except TimeDistillError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def _entry():
  """Console script ``timedistill``."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
