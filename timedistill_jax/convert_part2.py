"""PyTorch reference state_dicts -> Flax variables for MICN, FEDformer, TimesNet, Autoformer.

Each ``to_flax_<model>(state_dict, variables)`` takes the reference model's ``state_dict()`` as
NumPy arrays (``{k: v.numpy() for k, v in sd.items()}``) and the Flax variables of a model built
with the same settings (for the shapes), and returns new variables. Every Flax leaf must be
filled and every reference key used, or :class:`CheckpointError` names the key or shape at
fault. Layout changes: Linear and 1x1 Conv1d weights are transposed to ``[in, out]``; Conv1d
``[out, in, k] -> [k, in, out]``; ConvTranspose1d ``[in, out, k] -> [k, in, out]``; Conv2d
``[out, in, kh, kw] -> [kh, kw, in, out]``; LayerNorm weight -> scale.

Keys the reference stores but the Flax models derive or never use are skipped: the sinusoidal
``position_embedding.pe`` buffers, and MICN's ``dec_embedding.temporal_embedding`` (built by
the reference, never called: MICN embeds without time features). Parameters the reference
shares between layers (FEDformer's Fourier blocks) appear under several keys; they must agree.
A model built for F = 0 (no time features) has no time-feature Linear; the reference always
builds one (for ``freq``) and leaves it unused when ``x_mark`` is None, so its key is skipped.

FEDformer's random Fourier modes are attributes, not state: :func:`fedformer_mode_indices`
reads them from a reference model so that the Flax model can be built with the same modes.
"""

import re

import flax
import numpy as np

from timedistill_jax.errors import CheckpointError

LAYOUTS = {
    "copy": lambda w: w,
    "linear": lambda w: w.T,
    "conv1x1": lambda w: w[:, :, 0].T,
    "conv1d": lambda w: w.transpose(2, 1, 0),
    "conv_transpose1d": lambda w: w.transpose(2, 0, 1),
    "conv2d": lambda w: w.transpose(2, 3, 1, 0),
}
SKIP = (re.compile(r"(^|\.)position_embedding\.pe$"),)


def apply_table(state_dict: dict, variables, table: list, skip=SKIP):
  """Fills ``variables["params"]`` from ``state_dict`` by ``table`` = [(key, path, layout)].

  ``path`` is a tuple of names inside ``params``. Raises :class:`CheckpointError` for a missing
  key, a shape mismatch, disagreeing shared copies, unfilled Flax leaves and leftover keys.
  """
  params = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
  filled = {}
  used = set()
  for key, path, layout in table:
    if key not in state_dict:
      raise CheckpointError(f"reference state_dict has no key {key!r} (for Flax {'/'.join(path)})")
    if path not in params:
      raise CheckpointError(f"Flax model has no parameter {'/'.join(path)} (for key {key!r})")
    want = tuple(params[path].shape)
    try:
      value = np.asarray(LAYOUTS[layout](np.asarray(state_dict[key])), np.float32)
    except (ValueError, IndexError):  # wrong number of axes for the layout
      value = None
    if value is None or value.shape != want:
      raise CheckpointError(
          f"shape of {key!r} {tuple(np.shape(state_dict[key]))} does not fit Flax "
          f"{'/'.join(path)} {want} (after layout {layout!r})")
    if path in filled and not np.array_equal(filled[path], value):
      raise CheckpointError(f"shared parameter {'/'.join(path)} differs under key {key!r}")
    filled[path] = value
    used.add(key)
  unfilled = sorted("/".join(p) for p in params if p not in filled)
  if unfilled:
    raise CheckpointError(f"no reference key for Flax parameter(s): {', '.join(unfilled)}")
  # A Flax embedding without time features (F = 0) leaves the reference's unused Linear over.
  no_time = [re.compile("^" + re.escape(n) + r"\.temporal_embedding\.")
             for n in ("enc_embedding", "dec_embedding") if "temporal" not in
             flax.core.unfreeze(variables["params"]).get(n, {"temporal": None})]
  leftover = sorted(k for k in state_dict
                    if k not in used and not any(r.search(k) for r in tuple(skip) + tuple(no_time)))
  if leftover:
    raise CheckpointError(f"reference key(s) not used by the Flax model: {', '.join(leftover)}")
  new_params = flax.traverse_util.unflatten_dict(
      {p: np.asarray(v, params[p].dtype) for p, v in filled.items()})
  return {**variables, "params": new_params}


def _linear(torch_prefix: str, flax_path: tuple, bias: bool = True) -> list:
  rows = [(f"{torch_prefix}.weight", flax_path + ("kernel",), "linear")]
  if bias:
    rows.append((f"{torch_prefix}.bias", flax_path + ("bias",), "copy"))
  return rows


def _layer_norm(torch_prefix: str, flax_path: tuple) -> list:
  return [(f"{torch_prefix}.weight", flax_path + ("scale",), "copy"),
          (f"{torch_prefix}.bias", flax_path + ("bias",), "copy")]


def _embedding(torch_prefix: str, flax_name: str, params: dict) -> list:
  rows = [(f"{torch_prefix}.value_embedding.tokenConv.weight", (flax_name, "value", "kernel"),
           "conv1d")]
  if "temporal" in params.get(flax_name, {}):
    rows += _linear(f"{torch_prefix}.temporal_embedding.embed", (flax_name, "temporal"), False)
  return rows


def _projections(torch_prefix: str, flax_name: str) -> list:
  rows = []
  for torch_name, flax_leaf in (("query", "query"), ("key", "key"), ("value", "value"),
                                ("out", "out")):
    rows += _linear(f"{torch_prefix}.{torch_name}_projection", (flax_name, flax_leaf))
  return rows


def _decomp_transformer_table(params: dict, fourier: bool) -> list:
  """Autoformer / FEDformer: embeddings, decomposition encoder and decoder, projection."""
  rows = _embedding("enc_embedding", "enc_embedding", params)
  rows += _embedding("dec_embedding", "dec_embedding", params)
  e_layers = sum(1 for k in params if re.fullmatch(r"encoder_\d+", k))
  d_layers = sum(1 for k in params if re.fullmatch(r"decoder_\d+", k))
  for i in range(e_layers):
    t = f"encoder.attn_layers.{i}"
    rows += _projections(f"{t}.attention", f"enc_{i}_attention")
    rows += [(f"{t}.conv1.weight", (f"encoder_{i}", "ff", "conv1", "kernel"), "conv1x1"),
             (f"{t}.conv2.weight", (f"encoder_{i}", "ff", "conv2", "kernel"), "conv1x1")]
    if fourier:
      rows += [(f"{t}.attention.inner_correlation.{w}", ("encoder_fourier", w), "copy")
               for w in ("weights1", "weights2")]
  for i in range(d_layers):
    t = f"decoder.layers.{i}"
    rows += _projections(f"{t}.self_attention", f"dec_{i}_self_attention")
    rows += _projections(f"{t}.cross_attention", f"dec_{i}_cross_attention")
    rows += [(f"{t}.conv1.weight", (f"decoder_{i}", "ff", "conv1", "kernel"), "conv1x1"),
             (f"{t}.conv2.weight", (f"decoder_{i}", "ff", "conv2", "kernel"), "conv1x1"),
             (f"{t}.projection.weight", (f"decoder_{i}", "projection", "kernel"), "conv1d")]
    if fourier:
      for w in ("weights1", "weights2"):
        rows.append((f"{t}.self_attention.inner_correlation.{w}", ("decoder_fourier", w), "copy"))
        rows.append((f"{t}.cross_attention.inner_correlation.{w}",
                     ("decoder_cross_fourier", w), "copy"))
  rows += _layer_norm("encoder.norm.layernorm", ("encoder_norm", "layernorm"))
  rows += _layer_norm("decoder.norm.layernorm", ("decoder_norm", "layernorm"))
  rows += _linear("decoder.projection", ("projection",))
  return rows


def to_flax_autoformer(state_dict: dict, variables):
  return apply_table(state_dict, variables,
                     _decomp_transformer_table(variables["params"], fourier=False))


def to_flax_fedformer(state_dict: dict, variables):
  return apply_table(state_dict, variables,
                     _decomp_transformer_table(variables["params"], fourier=True))


def fedformer_mode_indices(reference_model) -> tuple:
  """(encoder, decoder self, cross q, cross kv) mode indices of a reference FEDformer.

  Pass the result as ``mode_indices`` when building the Flax FEDformer. Duck-typed: reads the
  ``index`` / ``index_q`` / ``index_kv`` attributes, no torch import needed.
  """
  enc = reference_model.encoder.attn_layers[0].attention.inner_correlation
  dec = reference_model.decoder.layers[0]
  cross = dec.cross_attention.inner_correlation
  as_tuple = lambda idx: tuple(int(i) for i in idx)
  return (as_tuple(enc.index), as_tuple(dec.self_attention.inner_correlation.index),
          as_tuple(cross.index_q), as_tuple(cross.index_kv))


def to_flax_timesnet(state_dict: dict, variables):
  params = variables["params"]
  rows = _embedding("enc_embedding", "enc_embedding", params)
  rows += _linear("predict_linear", ("predict_linear",))
  rows += _layer_norm("layer_norm", ("layer_norm",))
  rows += _linear("projection", ("projection",))
  blocks = sorted(k for k in params if re.fullmatch(r"block_\d+", k))
  for name in blocks:
    i = int(name.split("_")[1])
    for torch_idx, conv in ((0, "conv1"), (2, "conv2")):
      kernels = sum(1 for k in params[name][conv] if k.startswith("kernel_"))
      for j in range(kernels):
        t = f"model.{i}.conv.{torch_idx}.kernels.{j}"
        rows += [(f"{t}.weight", (name, conv, f"kernel_{j}"), "conv2d"),
                 (f"{t}.bias", (name, conv, f"bias_{j}"), "copy")]
  return apply_table(state_dict, variables, rows)


def to_flax_micn(state_dict: dict, variables):
  params = variables["params"]
  rows = [("dec_embedding.value_embedding.tokenConv.weight", ("dec_embedding", "value", "kernel"),
           "conv1d"),
          ("regression.weight", ("regression_kernel",), "linear"),
          ("regression.bias", ("regression_bias",), "copy")]
  rows += _linear("conv_trans.projection", ("projection",))
  for name in sorted(k for k in params if re.fullmatch(r"mic_\d+", k)):
    t = f"conv_trans.mic.{name.split('_')[1]}"
    scales = sum(1 for k in params[name] if re.fullmatch(r"conv_\d+", k))
    for i in range(scales):
      for torch_name, flax_name, layout in (("conv", "conv", "conv1d"),
                                            ("isometric_conv", "isometric_conv", "conv1d"),
                                            ("conv_trans", "conv_trans", "conv_transpose1d")):
        rows += [(f"{t}.{torch_name}.{i}.weight", (name, f"{flax_name}_{i}", "kernel"), layout),
                 (f"{t}.{torch_name}.{i}.bias", (name, f"{flax_name}_{i}", "bias"), "copy")]
    rows += [(f"{t}.merge.weight", (name, "merge_kernel"), "conv2d"),
             (f"{t}.merge.bias", (name, "merge_bias"), "copy"),
             (f"{t}.conv1.weight", (name, "conv1", "kernel"), "conv1x1"),
             (f"{t}.conv1.bias", (name, "conv1", "bias"), "copy"),
             (f"{t}.conv2.weight", (name, "conv2", "kernel"), "conv1x1"),
             (f"{t}.conv2.bias", (name, "conv2", "bias"), "copy")]
    for norm in ("norm", "norm1", "norm2"):
      rows += _layer_norm(f"{t}.{norm}", (name, norm))
  skip = SKIP + (re.compile(r"^dec_embedding\.temporal_embedding\."),)
  return apply_table(state_dict, variables, rows, skip=skip)


CONVERTERS = {
    "autoformer": to_flax_autoformer,
    "fedformer": to_flax_fedformer,
    "timesnet": to_flax_timesnet,
    "micn": to_flax_micn,
}
