"""Model registry: lowercase name -> Flax Linen module class.

Every registered model shares one contract (docs/design.md)::

    pred, features = model.apply(variables, x, x_mark, y_mark, train=False)
    # x: [B, L, C], x_mark: [B, L, F], y_mark: [B, S + H, F]
    # pred: [B, H, C]; features["hidden"]: [B, C, model.feature_dim]

and the constructor fields ``seq_len``, ``label_len``, ``pred_len`` and ``enc_in`` (channels) of
:class:`~timedistill_jax.models.base.ForecastModel`, filled from the data; every other field
comes from ``config.model``.
"""

import dataclasses

import jax

from timedistill_jax.errors import ConfigError, registrar, unknown_name

REGISTRY: dict = {}
STUDENTS = ("mlp", "dmlp")


# ``@register(name)``: class decorator adding a model to :data:`REGISTRY` under ``name``.
register = registrar(REGISTRY, "model")


def model_fields(name: str) -> tuple:
  """The hyperparameter names a model accepts (besides the data-given ones)."""
  cls = get_model_class(name)
  data_given = {"seq_len", "label_len", "pred_len", "enc_in", "parent", "name", "bn_axis_name"}
  return tuple(f.name for f in dataclasses.fields(cls) if f.name not in data_given)


def get_model_class(name: str):
  if name not in REGISTRY:
    raise unknown_name("model", name, REGISTRY)
  return REGISTRY[name]


def build_model(model_config, *, seq_len: int, label_len: int, pred_len: int, enc_in: int,
                axis_name: str | None = None):
  """Builds ``model_config.name`` with the data-given sizes and the config's hyperparameters.

  ``axis_name``: the device axis a model's BatchNorm reduces over in data-parallel training
  (for models that have a ``bn_axis_name`` field).
  """
  cfg = dict(model_config)
  name = cfg.pop("name")
  cls = get_model_class(name)
  allowed = set(model_fields(name))
  extra = sorted(set(cfg) - allowed)
  if extra:
    raise ConfigError(
        f"model {name!r} has no setting(s) {', '.join(extra)}; it accepts: "
        f"{', '.join(sorted(allowed))}. Remove them from config.model.")
  if axis_name is not None and "bn_axis_name" in {f.name for f in dataclasses.fields(cls)}:
    cfg["bn_axis_name"] = axis_name
  return cls(seq_len=seq_len, label_len=label_len, pred_len=pred_len, enc_in=enc_in, **cfg)


def count_params(variables) -> int:
  """Number of trainable parameters (the ``params`` collection, or a bare params tree)."""
  params = variables.get("params", variables)
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def init_variables(model, batch, rng) -> dict:
  """``model.init`` on ``batch`` (arrays or ``ShapeDtypeStruct``s with keys x, x_mark, y_mark,
  mask), with one key for the parameters and the dropout stream: every run builds its models
  this way, so a model's initial weights depend on the seed alone."""
  return model.init({"params": rng, "dropout": rng}, batch["x"], batch["x_mark"],
                    batch["y_mark"], train=False, mask=batch["mask"])


# Importing the modules fills the registry.
from timedistill_jax.models import student  # noqa: E402,F401
from timedistill_jax.models import teachers  # noqa: E402,F401
