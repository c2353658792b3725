"""Reference PyTorch state dicts -> Flax variables, one mapping table per model.

A table is a list of rules ``(module regex, Flax module path, kind)``. A state-dict key
``"a.b.3.weight"`` splits into its module ``"a.b.3"`` and leaf ``"weight"``; the first rule whose
regex matches the whole module gives the Flax path (``{0}``, ``{1}`` ... are the regex groups) and
the kind says where each leaf goes and how its array is laid out:

==============  =====================================================================
kind            leaves
==============  =====================================================================
linear          weight ``[out, in]`` -> kernel ``[in, out]``; bias
conv            Conv1d weight ``[out, in/groups, k]`` -> ``nn.Conv`` kernel ``[k, in/groups, out]``
conv_linear     Conv1d weight used as a Linear (kernel 1, or one input channel over a patch):
                ``[out, in, k]`` -> kernel ``[in * k, out]``; bias
layer_norm      weight -> scale; bias
batch_norm      weight -> scale, bias; running_mean / running_var -> batch_stats mean / var
                (num_batches_tracked is dropped)
revin           affine_weight -> weight; affine_bias -> bias
unused          dropped: modules or buffers the reference holds but never needs here
==============  =====================================================================

Every key must be mapped (or marked unused), land on a variable of the model with the same shape,
and every variable must be filled; otherwise :class:`CheckpointError` names the key and shapes.
"""

import re

import flax
import numpy as np

from timedistill_jax import models
from timedistill_jax.errors import CheckpointError

PARAMS, STATS = "params", "batch_stats"

_T = lambda w: w.T
_CONV = lambda w: np.transpose(w, (2, 1, 0))
_CONV_LINEAR = lambda w: w.reshape(w.shape[0], -1).T
_SAME = lambda w: w

# kind -> leaf -> (collection, variable name, layout transform); None drops the leaf.
KINDS = {
    "linear": {"weight": (PARAMS, "kernel", _T), "bias": (PARAMS, "bias", _SAME)},
    "conv": {"weight": (PARAMS, "kernel", _CONV), "bias": (PARAMS, "bias", _SAME)},
    "conv_linear": {"weight": (PARAMS, "kernel", _CONV_LINEAR), "bias": (PARAMS, "bias", _SAME)},
    "layer_norm": {"weight": (PARAMS, "scale", _SAME), "bias": (PARAMS, "bias", _SAME)},
    "batch_norm": {
        "weight": (PARAMS, "scale", _SAME), "bias": (PARAMS, "bias", _SAME),
        "running_mean": (STATS, "mean", _SAME), "running_var": (STATS, "var", _SAME),
        "num_batches_tracked": None},
    "revin": {"affine_weight": (PARAMS, "weight", _SAME), "affine_bias": (PARAMS, "bias", _SAME)},
}

# Axes of the PyTorch weight each layout change expects.
WEIGHT_NDIM = {"linear": 2, "conv": 3, "conv_linear": 3}

CONVERTERS: dict = {}


def register_converter(name: str):
  """Decorator: ``fn(model, has) -> rules`` becomes the mapping table of model ``name``;
  ``has(path)`` tells whether the model's variables hold the module ``path``."""

  def wrap(fn):
    if name in CONVERTERS:
      raise RuntimeError(f"converter {name!r} registered twice")
    CONVERTERS[name] = fn
    return fn

  return wrap


def _model_name(model) -> str:
  for name, cls in models.REGISTRY.items():
    if type(model) is cls and name in CONVERTERS:
      return name
  raise CheckpointError(f"no PyTorch mapping for {type(model).__name__}; mapped models: "
                        f"{', '.join(sorted(CONVERTERS))}.")


def _to_numpy(value):
  if hasattr(value, "detach"):  # a torch tensor, without importing torch
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def _as_numpy_dict(state_dict: dict) -> dict:
  return {k: _to_numpy(v) for k, v in state_dict.items()}


def from_torch(model, state_dict: dict, template) -> dict:
  """Flax variables of ``model`` holding the reference ``state_dict``'s values.

  ``template``: the model's variables (from ``model.init`` or ``jax.eval_shape``), which give the
  expected paths and shapes. ``state_dict``: name -> numpy array (or torch tensor).
  """
  from timedistill_jax import convert_part2  # MICN, FEDformer, TimesNet, Autoformer
  if _model_name(model) in convert_part2.CONVERTERS:
    return convert_part2.CONVERTERS[_model_name(model)](_as_numpy_dict(state_dict), template)
  expected = {k: tuple(v.shape) for k, v in
              flax.traverse_util.flatten_dict(flax.core.unfreeze(template)).items()}
  modules = {"/".join(k[1:1 + i]) for k in expected for i in range(1, len(k))}
  table = CONVERTERS[_model_name(model)](model, modules.__contains__)
  rules = [(re.compile(rx), path, kind) for rx, path, kind in table]
  filled = {}
  for key, value in state_dict.items():
    module, _, leaf = key.rpartition(".")
    rule = next(((rx.fullmatch(module), path, kind) for rx, path, kind in rules
                 if rx.fullmatch(module)), None)
    if rule is None:
      raise CheckpointError(f"checkpoint key {key!r} has no target in {type(model).__name__}.")
    match, path, kind = rule
    if kind == "unused":
      continue
    if leaf not in KINDS[kind]:
      raise CheckpointError(f"checkpoint key {key!r}: a {kind} has no entry {leaf!r}.")
    if KINDS[kind][leaf] is None:
      continue
    collection, var_name, layout = KINDS[kind][leaf]
    target = (collection, *path.format(*match.groups()).split("/"), var_name)
    given = _to_numpy(value)
    if target not in expected:
      raise CheckpointError(
          f"checkpoint key {key!r} maps to {'/'.join(target)}, which {type(model).__name__} "
          "does not have.")
    ndim = WEIGHT_NDIM.get(kind) if var_name == "kernel" else None
    if ndim is not None and given.ndim != ndim:
      raise CheckpointError(f"checkpoint key {key!r}: a {kind} weight has {ndim} axes, given "
                            f"shape {tuple(given.shape)}.")
    array = layout(given)
    if tuple(array.shape) != expected[target]:
      raise CheckpointError(
          f"checkpoint key {key!r} -> {'/'.join(target)}: expected shape {expected[target]}, "
          f"given {tuple(array.shape)} (in PyTorch layout {tuple(given.shape)}).")
    filled[target] = array.astype(np.float32)
  missing = sorted("/".join(k) for k in expected if k not in filled)
  if missing:
    raise CheckpointError(f"the checkpoint does not set: {', '.join(missing)}.")
  return flax.traverse_util.unflatten_dict(filled)


def _transformer_layers(prefix: str, target: str):
  """TSLib ``EncoderLayer`` keys under ``prefix`` -> ``layers/transformer.py`` under ``target``."""
  layer = rf"{prefix}attn_layers\.(\d+)"
  return [
      (rf"{layer}\.attention\.(query|key|value|out)_projection", target + "layer_{0}/attention/{1}",
       "linear"),
      (rf"{layer}\.(conv1|conv2)", target + "layer_{0}/{1}", "conv_linear"),
      (rf"{layer}\.(norm1|norm2)", target + "layer_{0}/{1}", "layer_norm"),
  ]


@register_converter("itransformer")
def _itransformer(model, has):
  del model, has
  return [
      (r"enc_embedding\.value_embedding", "embedding", "linear"),
      *_transformer_layers(r"encoder\.", "encoder/"),
      (r"encoder\.norm", "encoder/norm", "layer_norm"),
      (r"projection", "projection", "linear"),
  ]


@register_converter("patchtst")
def _patchtst(model, has):
  del model, has
  return [
      (r"patch_embedding\.value_embedding", "value_embedding", "linear"),
      (r"patch_embedding\.position_embedding", "", "unused"),  # fixed table, recomputed
      *_transformer_layers(r"encoder\.", ""),
      (r"encoder\.norm\.1", "norm", "batch_norm"),
      (r"head\.linear", "head", "linear"),
  ]


@register_converter("moderntcn")
def _moderntcn(model, has):
  del model, has
  block = r"model\.stages\.0\.blocks\.(\d+)"
  return [
      (r"model\.revin_layer", "revin", "revin"),
      (r"model\.downsample_layers\.0\.0", "stem", "conv_linear"),
      (r"model\.downsample_layers\.0\.1", "stem_bn", "batch_norm"),
      (rf"{block}\.dw\.lkb_origin\.conv", "block_{0}/large_conv", "conv"),
      (rf"{block}\.dw\.lkb_origin\.bn", "block_{0}/large_bn", "batch_norm"),
      (rf"{block}\.dw\.small_conv\.conv", "block_{0}/small_conv", "conv"),
      (rf"{block}\.dw\.small_conv\.bn", "block_{0}/small_bn", "batch_norm"),
      (rf"{block}\.dw\.lkb_reparam", "block_{0}/merged_conv", "conv"),
      (rf"{block}\.norm", "block_{0}/norm", "batch_norm"),
      (rf"{block}\.(ffn[12])pw([12])", "block_{0}/{1}_pw{2}", "conv_linear"),
      (r"model\.head\.linear", "head", "linear"),
      # Built by the reference's constructor but not on TimeDistill's one-stage forward path.
      (r"model\.(downsample_layers\.[1-9]|te_patch|lat_layer|smooth_layer|up_sample_conv)(\..*)?",
       "", "unused"),
  ]


@register_converter("timemixer")
def _timemixer(model, has):
  pdm = r"pdm_blocks\.(\d+)"
  mlp = lambda rx, target: [(rf"{rx}\.0", target + "/fc1", "linear"),
                            (rf"{rx}\.2", target + "/fc2", "linear")]
  if model.channel_independence:
    cross = mlp(rf"{pdm}\.out_cross_layer", "pdm_{0}/out_cross")
  else:
    cross = [*mlp(rf"{pdm}\.cross_layer", "pdm_{0}/cross"),
             (rf"{pdm}\.out_cross_layer(\..*)?", "", "unused")]
  return [
      # With use_norm off the reference still holds the RevIN affines; nothing reads them.
      (r"normalize_layers\.(\d+)", "normalize_{0}", "revin" if model.use_norm else "unused"),
      (r"enc_embedding\.value_embedding\.tokenConv", "enc_embedding/value", "conv"),
      # The reference builds the calendar embedding even for data without calendar features.
      (r"enc_embedding\.temporal_embedding\.embed", "enc_embedding/temporal",
       "linear" if has("enc_embedding/temporal") else "unused"),
      (r"enc_embedding\.position_embedding", "", "unused"),  # built, never added (wo_pos)
      *mlp(rf"{pdm}\.mixing_multi_scale_season\.down_sampling_layers\.(\d+)", "pdm_{0}/season_{1}"),
      *mlp(rf"{pdm}\.mixing_multi_scale_trend\.up_sampling_layers\.(\d+)", "pdm_{0}/trend_{1}"),
      *cross,
      (rf"{pdm}\.layer_norm", "", "unused"),
      (r"predict_layers\.(\d+)", "predict_{0}", "linear"),
      (r"projection_layer", "projection", "linear"),
      (r"out_res_layers\.(\d+)", "out_res_{0}", "linear"),
      (r"regression_layers\.(\d+)", "regression_{0}", "linear"),
  ]
