"""Run assembly: from a config and its data to the model, state and compiled steps of a run.

A run kind (``config.kind``) names a function in ``RUN_KINDS`` that gives its ``Parts``; the
loop in ``trainer.py`` asks ``build_run`` for a ``Run`` and never branches on the kind, nor on
whether the run is one model or an ensemble of many (``config.ensemble``, ``runs/ensemble.py``).
``restore_run`` rebuilds any finished run (teacher, student or distilled student, or a member of
an ensemble) from its best checkpoint alone.

  assembly.py   the data a step sees, compiled loops, evaluation, single runs, student parts
  distill.py    teachers restored and checked, their outputs cached, the distillation parts
  ensemble.py   members of an ensemble and their stacked run
  restore.py    restore_run
"""

from timedistill_jax import parallel
from timedistill_jax.errors import unknown_name
from timedistill_jax.runs import ensemble
from timedistill_jax.runs.assembly import (STEP_KEYS, Evaluator, Parts, Run, eval_variables,
                                           f_dim_of, host_batch, load_splits, loop_fn,
                                           model_for, optimizer_for, sample_batch, single,
                                           steps_per_epoch, student_parts)
from timedistill_jax.runs.distill import (check_teacher, distill_parts, precompute_teacher_outputs,
                                          teacher_cache_mb, teacher_workdirs,
                                          torch_teacher_paths)
from timedistill_jax.runs.restore import Restored, Teacher, load_teacher, restore_run
from timedistill_jax.timing import PhaseClock

# The teacher is trained like the student baseline; only its config differs.
RUN_KINDS = {"student": student_parts, "teacher": student_parts, "distill": distill_parts}


def build_run(config, splits, par: parallel.DataParallel | None = None,
              clock: PhaseClock | None = None) -> Run:
  """The ``Run`` of ``config.kind`` (``student`` by default), one model or an ensemble;
  ``clock`` counts compilation and the teacher cache."""
  kind = config.get("kind", "student")
  if kind not in RUN_KINDS:
    raise unknown_name("run kind (config.kind)", kind, RUN_KINDS)
  par = par or parallel.DataParallel("none")
  parts = RUN_KINDS[kind](config, splits, par, clock)
  if ensemble.is_ensemble(config):
    return ensemble.build(parts, config, splits, par, clock)
  return single(parts, config, splits, par, clock)


__all__ = [
    "RUN_KINDS", "STEP_KEYS", "Evaluator", "Parts", "Restored", "Run", "Teacher", "build_run",
    "check_teacher", "distill_parts", "ensemble", "eval_variables", "f_dim_of", "host_batch",
    "load_splits", "load_teacher", "loop_fn", "model_for", "optimizer_for",
    "precompute_teacher_outputs", "restore_run", "sample_batch", "single", "steps_per_epoch",
    "student_parts", "teacher_cache_mb", "teacher_workdirs", "torch_teacher_paths",
]
