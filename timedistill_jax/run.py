"""The entry point of every run: ``run(config, workdir)``, whatever ``config.kind`` is."""

from timedistill_jax.trainer import train_and_evaluate


def run(config, workdir) -> dict:
  """Runs ``config`` (kind ``student``, ``teacher`` or ``distill``) in ``workdir``."""
  return train_and_evaluate(config, workdir)
