r"""Command line: ``python -m timedistill_jax --config NAME_OR_FILE:ARGS --workdir DIR``.

  python -m timedistill_jax --config student:dataset=etth1,pred_len=96 \
      --workdir runs/etth1_dmlp_96 --config.optim.lr=0.005

``NAME`` is ``student``, ``teacher`` or ``distill`` (the package's configs); a path such as
``configs/student.py`` or a config file of your own works the same way.

The config is locked: an override of a key that does not exist is an error. Every problem a user
can cause ends in one line naming it and the fix, with exit status 2.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags


def resolve_config_names(argv) -> list:
  """``--config student:ARGS`` (a bare name, no such file) -> the package's config file.

  A path such as ``configs/student.py:ARGS`` is left as it is, so both forms run the same
  ``get_config``.
  """
  from timedistill_jax.configs import NAMES, config_file

  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      flag, value = "--config=", arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(out):
      flag, value, i = "", out[i + 1], i + 1
    else:
      continue
    name, sep, rest = value.partition(":")
    if name in NAMES and not os.path.exists(name):
      out[i] = flag + config_file(name) + sep + rest
  return out


_USAGE = ("usage: python -m timedistill_jax --config {student,teacher,distill,FILE.py}"
          ":key=value,... --workdir DIR [--config.group.key=value ...]")
sys.argv[:] = resolve_config_names(sys.argv)
_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for logs, checkpoints and results.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", "", "Folder of a persistent compilation cache, so that a repeated run "
    "skips most of its compile time (off when empty; JAX_COMPILATION_CACHE_DIR also works).")
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


def _config_arg(argv):
  """The value of ``--config`` in ``argv`` (None if absent)."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _unknown_key(argv, key: str) -> str | None:
  """For a ``--config.a.b=v`` with a part ``key`` that does not exist: its group's keys."""
  import importlib.util

  value = _config_arg(argv)
  paths = [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]
  path = next((p for p in paths if key in p.split(".")), None)
  if value is None or path is None:
    return None
  parts = path.split(".")
  parents = parts[:parts.index(key)]
  file, _, arg = value.partition(":")
  spec = importlib.util.spec_from_file_location("_config_file", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  group = module.get_config(arg or None)
  for part in parents:
    group = group[part]
  where = ".".join(parents) or "the config"
  return f"unknown config key {path!r}; {where} has: {', '.join(sorted(group.keys()))}"


def parse_flags(argv):
  """absl's parsing, with a bad config (argument, file or override) as one line, exit 2."""
  value = _config_arg(argv)
  if value is not None and not os.path.isfile(value.partition(":")[0]):
    _fail(f"no config file {value.partition(':')[0]!r}: --config takes a name (student, "
          "teacher, distill) or the path of a get_config file.")
  try:
    return flags.FLAGS(argv)
  except (flags.Error, ValueError, AttributeError, KeyError, TypeError) as e:
    message = _one_line(e)
    if isinstance(e, KeyError) or message.strip("'") != message:
      try:
        message = _unknown_key(argv, message.strip("'")) or message
      except Exception:  # the plain message is still right
        pass
    _fail(message)


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  print(_USAGE, file=sys.stderr)
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
    print(f"error: cannot load the config file: {' '.join(str(e).split())}. --config takes a "
          "name (student, teacher, distill) or the path of a get_config file.", file=sys.stderr)
    print(_USAGE, file=sys.stderr)
    sys.exit(2)
  if _CACHE.value:
    from timedistill_jax import compilation
    compilation.enable(_CACHE.value)
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
