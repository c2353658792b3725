"""Dispatch from a config to the right kind of run."""

from timedistill_jax import trainer


def run(config, workdir) -> dict:
  """Runs ``config`` (kind ``student``, ``teacher`` or ``distill``) in ``workdir``."""
  if config.get("kind", "student") == "distill":
    from timedistill_jax import distill
    return trainer.train_and_evaluate(config, workdir, build_run=distill.build_distill_run)
  return trainer.train_and_evaluate(config, workdir)
