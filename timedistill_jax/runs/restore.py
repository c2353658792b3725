"""Restoring a finished run: any run (teacher, student or distilled student) rebuilt from its
``best`` checkpoint alone, which is how trained teachers are carried into distillation."""

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from timedistill_jax import steps
from timedistill_jax.checkpoints import CheckpointStore
from timedistill_jax.errors import CheckpointError
from timedistill_jax.models import build_model, init_variables


@dataclasses.dataclass(frozen=True)
class Restored:
  """A trained model restored from its run's ``best`` checkpoint, ready for ``apply``."""

  model: Any
  variables: dict
  metadata: dict
  workdir: str


def restore_run(workdir, *, check: Callable[[dict], None] | None = None) -> Restored:
  """Rebuilds the model of any finished run from its best checkpoint alone (config and data
  sizes are in the metadata). ``check(metadata)`` may refuse it before anything is built.

  A distilled student's checkpoint also holds the regressors; they are restored for the
  integrity check and then dropped."""
  best = Path(workdir) / "checkpoints" / "best"
  if not best.is_dir():
    raise CheckpointError(
        f"{workdir} holds no trained model ({best} is missing). Train a teacher first, e.g. "
        "python -m timedistill_jax --config teacher:dataset=etth1,pred_len=96 "
        f"--workdir {workdir}")
  with CheckpointStore(best, create=False) as store:
    metadata = store.read_metadata()
    if check is not None:
      check(metadata)
    cfg = ml_collections.ConfigDict(metadata["config"])
    d, data = cfg.data, metadata["data"]
    model = build_model(cfg.model, seq_len=d.seq_len, label_len=d.label_len,
                        pred_len=d.pred_len, enc_in=data["num_channels"])
    f, c = data["num_time_features"], data["num_channels"]
    shapes = {"x": jnp.zeros((1, d.seq_len, c)), "x_mark": jnp.zeros((1, d.seq_len, f)),
              "y_mark": jnp.zeros((1, d.label_len + d.pred_len, f)), "mask": jnp.ones(1)}
    abstract_vars = jax.eval_shape(lambda: init_variables(model, shapes, jax.random.PRNGKey(0)))
    abstract = {"params": {"model": abstract_vars["params"]},
                "batch_stats": abstract_vars.get("batch_stats", {})}
    if cfg.get("kind") == "distill":  # the regressors' sizes depend on the teachers
      abstract["params"]["regressors"] = store.saved_shapes()["params"]["regressors"]
    tree, metadata = store.restore(abstract)
  variables = steps.model_variables(tree["params"]["model"], tree["batch_stats"])
  return Restored(model=model, variables=variables, metadata=metadata, workdir=str(workdir))


load_teacher = restore_run  # the name distillation code has always used
Teacher = Restored
