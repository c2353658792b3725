"""The one mechanism that maps reference PyTorch state dicts to Flax variables, and back.

A model's mapping table is a list of rules ``(torch module, Flax module, kind)``. A state-dict
key ``"a.b.3.weight"`` splits into its module ``"a.b.3"`` and leaf ``"weight"``. Module names are
templates: ``{i}`` is a number and ``{p:query|key}`` one of the listed words, the same field
filling both sides (``"encoder.attn_layers.{i}.conv1"`` <-> ``"encoder/layer_{i}/conv1"``), so
one table serves both directions. The kind says where each leaf goes and how its array is laid
out:

==================  ==============================================================================
kind                leaves
==================  ==============================================================================
linear              weight ``[out, in]`` -> kernel ``[in, out]``; bias
conv                Conv1d weight ``[out, in/groups, k]`` -> ``nn.Conv`` kernel ``[k, in/groups, out]``
conv1x1             Conv1d with kernel 1 used as a Linear: ``[out, in, 1]`` -> kernel ``[in, out]``
patch_conv          Conv1d with one input channel over a patch: ``[out, 1, k]`` -> kernel ``[k, out]``
conv_transpose      ConvTranspose1d weight ``[in, out, k]`` -> kernel ``[k, in, out]``; bias
layer_norm          weight -> scale; bias
batch_norm          weight -> scale, bias; running_mean / running_var -> batch_stats mean / var
                    (num_batches_tracked is dropped)
revin               affine_weight -> weight; affine_bias -> bias
a dict              its own leaves: ``{leaf: (collection, variable template, layout)}``
unused              dropped: modules or buffers the reference holds but never needs here; the
                    torch side of such a rule is a plain regex. The sinusoidal
                    ``position_embedding`` tables are dropped for every model.
==================  ==============================================================================

Every key must be mapped (or marked unused) and land on a variable of the model with the same
shape; several keys may fill one variable (parameters the reference shares between layers) only
with equal values; every variable must be filled. Anything else is one :class:`CheckpointError`
naming the key, the variable and the shapes.
"""

import re

import flax
import numpy as np

from timedistill_jax import models
from timedistill_jax.errors import CheckpointError, registrar

PARAMS, STATS = "params", "batch_stats"

# layout name -> (PyTorch -> Flax, Flax -> PyTorch)
LAYOUTS = {
    "copy": (lambda w: w, lambda w: w),
    "linear": (lambda w: w.T, lambda w: w.T),
    "conv": (lambda w: w.transpose(2, 1, 0), lambda w: w.transpose(2, 1, 0)),
    "conv1x1": (lambda w: w.reshape(w.shape[0], -1).T, lambda w: w.T[:, :, None]),
    "patch_conv": (lambda w: w.reshape(w.shape[0], -1).T, lambda w: w.T[:, None, :]),
    "conv_transpose": (lambda w: w.transpose(2, 0, 1), lambda w: w.transpose(1, 2, 0)),
    "conv2d": (lambda w: w.transpose(2, 3, 1, 0), lambda w: w.transpose(3, 2, 0, 1)),
}
# Axes of the PyTorch weight each layout expects.
WEIGHT_NDIM = {"linear": 2, "conv": 3, "conv1x1": 3, "patch_conv": 3, "conv_transpose": 3,
               "conv2d": 4}


def _weight_kind(layout: str) -> dict:
  return {"weight": (PARAMS, "kernel", layout), "bias": (PARAMS, "bias", "copy")}


# kind -> leaf -> (collection, variable name, layout); None drops the leaf.
KINDS = {
    **{k: _weight_kind(k) for k in ("linear", "conv", "conv1x1", "patch_conv", "conv_transpose")},
    "layer_norm": {"weight": (PARAMS, "scale", "copy"), "bias": (PARAMS, "bias", "copy")},
    "batch_norm": {
        "weight": (PARAMS, "scale", "copy"), "bias": (PARAMS, "bias", "copy"),
        "running_mean": (STATS, "mean", "copy"), "running_var": (STATS, "var", "copy"),
        "num_batches_tracked": None},
    "revin": {"affine_weight": (PARAMS, "weight", "copy"),
              "affine_bias": (PARAMS, "bias", "copy")},
}

CONVERTERS: dict = {}

# ``@register_converter(name)``: ``fn(model, has) -> rules`` becomes the mapping table of
# model ``name``; ``has(path)`` tells whether the model's variables hold the Flax module ``path``.
register_converter = registrar(CONVERTERS, "converter")

_FIELD = re.compile(r"\{(\w+)(?::([\w|]+))?\}")


def _template_regex(template: str, choices: dict) -> re.Pattern:
  """``"a.{i}.{p:q|k}"`` -> a regex with named groups; ``choices`` collects each field's
  alternatives (a number when none are listed), so the other side's template reuses them."""
  out, pos, seen = [], 0, set()
  for m in _FIELD.finditer(template):
    out.append(re.escape(template[pos:m.start()]))
    name = m.group(1)
    if m.group(2):
      choices[name] = m.group(2)
    if name in seen:
      out.append(f"(?P={name})")
    else:
      out.append(f"(?P<{name}>{choices.get(name, '[0-9]+')})")
      seen.add(name)
    pos = m.end()
  out.append(re.escape(template[pos:]))
  return re.compile("".join(out))


def _plain(template: str) -> str:
  return _FIELD.sub(lambda m: "{" + m.group(1) + "}", template)


class _Rule:
  """One table row, compiled for both directions."""

  def __init__(self, torch_module, flax_module, kind):
    self.kind = kind
    if kind == "unused":
      self.torch_rx = re.compile(torch_module)
      return
    self.leaves = KINDS[kind] if isinstance(kind, str) else kind
    choices = {}
    self.torch_rx = _template_regex(torch_module, choices)
    self.torch_fmt = _plain(torch_module)
    self.flax_fmt = flax_module
    self.kind_name = kind if isinstance(kind, str) else "module"
    # The Flax side of each leaf as one path template: collection/module/variable.
    self.flax_leaf_rx = {}
    for leaf, spec in self.leaves.items():
      if spec is not None:
        collection, var, _ = spec
        full = "/".join(p for p in (collection, flax_module, var) if p)
        self.flax_leaf_rx[leaf] = _template_regex(full, dict(choices))

  def flax_target(self, fields: dict, leaf: str) -> tuple:
    collection, var, layout = self.leaves[leaf]
    module = self.flax_fmt.format(**fields)
    return (collection, *filter(None, module.split("/")), var.format(**fields)), layout


def _model_name(model) -> str:
  for name, cls in models.REGISTRY.items():
    if type(model) is cls and name in CONVERTERS:
      return name
  raise CheckpointError(f"no PyTorch mapping for {type(model).__name__}; mapped models: "
                        f"{', '.join(sorted(CONVERTERS))}.")


def _flat(template) -> dict:
  return {k: tuple(v.shape) for k, v in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(template)).items()}


# TSLib's sinusoidal position tables are buffers of fixed values that every Flax model recomputes.
_POSITION_TABLES = (r"(.*\.)?position_embedding", None, "unused")


def _rules(model, expected) -> list:
  modules = {"/".join(k[1:1 + i]) for k in expected for i in range(1, len(k))}
  table = CONVERTERS[_model_name(model)](model, modules.__contains__)
  return [_Rule(*row) for row in (*table, _POSITION_TABLES)]


def _to_numpy(value):
  if hasattr(value, "detach"):  # a torch tensor, without importing torch
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def from_torch(model, state_dict: dict, template) -> dict:
  """Flax variables of ``model`` holding the reference ``state_dict``'s values.

  ``template``: the model's variables (from ``model.init`` or ``jax.eval_shape``), which give the
  expected paths and shapes. ``state_dict``: name -> numpy array (or torch tensor).
  """
  name = type(model).__name__
  expected = _flat(template)
  rules = _rules(model, expected)
  filled, source = {}, {}
  for key, value in state_dict.items():
    module, _, leaf = key.rpartition(".")
    found = next(((r, r.torch_rx.fullmatch(module)) for r in rules
                  if r.torch_rx.fullmatch(module)), None)
    if found is None:
      raise CheckpointError(f"checkpoint key {key!r} has no target in {name}.")
    rule, match = found
    if rule.kind == "unused":
      continue
    if leaf not in rule.leaves:
      raise CheckpointError(f"checkpoint key {key!r}: a {rule.kind_name} has no entry {leaf!r}.")
    if rule.leaves[leaf] is None:
      continue
    target, layout = rule.flax_target(match.groupdict(), leaf)
    shown = "/".join(target)
    if target not in expected:
      raise CheckpointError(f"checkpoint key {key!r} maps to {shown}, which {name} does not have.")
    given = _to_numpy(value)
    ndim = WEIGHT_NDIM.get(layout)
    if ndim is not None and given.ndim != ndim:
      raise CheckpointError(f"checkpoint key {key!r}: a {layout} weight has {ndim} axes, given "
                            f"shape {tuple(given.shape)}.")
    array = np.asarray(LAYOUTS[layout][0](given), np.float32)
    if tuple(array.shape) != expected[target]:
      raise CheckpointError(
          f"checkpoint key {key!r} -> {shown}: expected shape {expected[target]}, given "
          f"{tuple(array.shape)} (in PyTorch layout {tuple(given.shape)}).")
    if target in filled and not np.array_equal(filled[target], array):
      raise CheckpointError(f"shared parameter {shown} differs under keys {source[target]!r} "
                            f"and {key!r}.")
    filled[target], source[target] = array, key
  missing = sorted("/".join(k) for k in expected if k not in filled)
  if missing:
    more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
    raise CheckpointError(f"the checkpoint does not set: {', '.join(missing[:6])}{more}.")
  return flax.traverse_util.unflatten_dict(filled)


def to_torch(model, variables) -> dict:
  """The reference ``state_dict`` (name -> numpy array, PyTorch layouts) of Flax ``variables``.

  The inverse of :func:`from_torch`: every key ``from_torch`` reads, except dropped buffers
  (``num_batches_tracked``); a parameter the reference shares appears under each of its keys.
  """
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables))
  rules = [r for r in _rules(model, _flat(variables)) if r.kind != "unused"]
  out = {}
  for path, value in flat.items():
    shown = "/".join(path)
    keys = [(r.torch_fmt.format(**m.groupdict()) + "." + leaf, r.leaves[leaf][2])
            for r in rules for leaf, rx in r.flax_leaf_rx.items()
            for m in [rx.fullmatch(shown)] if m]
    if not keys:
      raise CheckpointError(f"{type(model).__name__} variable {shown} has no PyTorch key.")
    for key, layout in keys:
      out[key] = np.ascontiguousarray(LAYOUTS[layout][1](np.asarray(value, np.float32)))
  return out
