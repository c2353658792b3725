"""One mapping table per model: reference (TimeDistill / Time-Series-Library) module names ->
Flax module paths. The mechanism and the kinds are in ``core.py``.

Keys the reference stores but the Flax models derive or never use are ``unused`` (the
sinusoidal ``position_embedding`` tables for every model, in ``core.py``): modules built by a
constructor but off the forward path, and a time-feature Linear the reference always builds (for ``freq``) but leaves unused
when the data have no calendar features (a Flax model built for F = 0 has none).
"""

from timedistill_jax.convert.core import PARAMS, register_converter

_ATTN = "{p:query|key|value|out}"


# -- students (models/DMLP.py and models/MLP.py of TimeDistill) -------------------------------

def _branch(torch: str, flax: str) -> list:
  """``nn.ModuleList([Linear, ReLU, Linear])``: indices 0 and 2 are our fc1 and fc2."""
  return [(f"{torch}.0", f"{flax}/fc1", "linear"), (f"{torch}.2", f"{flax}/fc2", "linear")]


@register_converter("dmlp")
def _dmlp(model, has):
  del model, has
  return [
      *_branch("Linear_Seasonal", "seasonal"),
      *_branch("Linear_Trend", "trend"),
      ("bn1", "seasonal/bn", "batch_norm"),
      ("bn2", "trend/bn", "batch_norm"),
      ("revin_layer", "revin", "revin"),
  ]


@register_converter("mlp")
def _mlp(model, has):
  del model, has
  return [
      *_branch("Linear_Seasonal", "branch"),
      ("bn1", "branch/bn", "batch_norm"),
      ("revin_layer", "revin", "revin"),
  ]




# -- Transformer teachers --------------------------------------------------------------------

def _transformer_layers(prefix: str, target: str):
  """TSLib ``EncoderLayer`` keys under ``prefix`` -> ``layers/transformer.py`` under ``target``."""
  layer = f"{prefix}attn_layers.{{i}}"
  return [
      (f"{layer}.attention.{_ATTN}_projection", target + "layer_{i}/attention/{p}", "linear"),
      (f"{layer}.{{c:conv1|conv2}}", target + "layer_{i}/{c}", "conv1x1"),
      (f"{layer}.{{c:norm1|norm2}}", target + "layer_{i}/{c}", "layer_norm"),
  ]


@register_converter("itransformer")
def _itransformer(model, has):
  del model, has
  return [
      ("enc_embedding.value_embedding", "embedding", "linear"),
      *_transformer_layers("encoder.", "encoder/"),
      ("encoder.norm", "encoder/norm", "layer_norm"),
      ("projection", "projection", "linear"),
  ]


@register_converter("patchtst")
def _patchtst(model, has):
  del model, has
  return [
      ("patch_embedding.value_embedding", "value_embedding", "linear"),
      *_transformer_layers("encoder.", ""),
      ("encoder.norm.1", "norm", "batch_norm"),
      ("head.linear", "head", "linear"),
  ]


# -- ModernTCN and TimeMixer -----------------------------------------------------------------

@register_converter("moderntcn")
def _moderntcn(model, has):
  del model, has
  block = "model.stages.0.blocks.{i}"
  return [
      ("model.revin_layer", "revin", "revin"),
      ("model.downsample_layers.0.0", "stem", "patch_conv"),
      ("model.downsample_layers.0.1", "stem_bn", "batch_norm"),
      (f"{block}.dw.lkb_origin.conv", "block_{i}/large_conv", "conv"),
      (f"{block}.dw.lkb_origin.bn", "block_{i}/large_bn", "batch_norm"),
      (f"{block}.dw.small_conv.conv", "block_{i}/small_conv", "conv"),
      (f"{block}.dw.small_conv.bn", "block_{i}/small_bn", "batch_norm"),
      (f"{block}.dw.lkb_reparam", "block_{i}/merged_conv", "conv"),
      (f"{block}.norm", "block_{i}/norm", "batch_norm"),
      (f"{block}.ffn{{f}}pw{{k}}", "block_{i}/ffn{f}_pw{k}", "conv1x1"),
      ("model.head.linear", "head", "linear"),
      # Built by the reference's constructor but not on TimeDistill's one-stage forward path.
      (r"model\.(downsample_layers\.[1-9]|te_patch|lat_layer|smooth_layer|up_sample_conv)(\..*)?",
       None, "unused"),
  ]


@register_converter("timemixer")
def _timemixer(model, has):
  pdm = "pdm_blocks.{i}"
  mlp = lambda torch, flax: [(torch + ".0", flax + "/fc1", "linear"),
                             (torch + ".2", flax + "/fc2", "linear")]
  if model.channel_independence:
    cross = mlp(f"{pdm}.out_cross_layer", "pdm_{i}/out_cross")
  else:
    cross = [*mlp(f"{pdm}.cross_layer", "pdm_{i}/cross"),
             (r"pdm_blocks\.\d+\.out_cross_layer(\..*)?", None, "unused")]
  return [
      # With use_norm off the reference still holds the RevIN affines; nothing reads them.
      *([("normalize_layers.{i}", "normalize_{i}", "revin")] if model.use_norm else
        [(r"normalize_layers\.\d+", None, "unused")]),
      ("enc_embedding.value_embedding.tokenConv", "enc_embedding/value", "conv"),
      # The reference builds the calendar embedding even for data without calendar features.
      *([("enc_embedding.temporal_embedding.embed", "enc_embedding/temporal", "linear")]
        if has("enc_embedding/temporal") else
        [(r"enc_embedding\.temporal_embedding\.embed", None, "unused")]),
      *mlp(f"{pdm}.mixing_multi_scale_season.down_sampling_layers.{{j}}", "pdm_{i}/season_{j}"),
      *mlp(f"{pdm}.mixing_multi_scale_trend.up_sampling_layers.{{j}}", "pdm_{i}/trend_{j}"),
      *cross,
      (r"pdm_blocks\.\d+\.layer_norm", None, "unused"),
      ("predict_layers.{i}", "predict_{i}", "linear"),
      ("projection_layer", "projection", "linear"),
      ("out_res_layers.{i}", "out_res_{i}", "linear"),
      ("regression_layers.{i}", "regression_{i}", "linear"),
  ]


# -- MICN, FEDformer, TimesNet, Autoformer ---------------------------------------------------

def _embedding(name: str, has) -> list:
  """TSLib ``DataEmbedding``: token convolution and a time-feature Linear without bias."""
  rows = [(f"{name}.value_embedding.tokenConv", f"{name}/value", "conv")]
  if has(f"{name}/temporal"):
    rows.append((f"{name}.temporal_embedding.embed", f"{name}/temporal", "linear"))
  else:
    rows.append((rf"{name}\.temporal_embedding\..*", None, "unused"))
  return rows


_FOURIER = {w: (PARAMS, w, "copy") for w in ("weights1", "weights2")}


def _decomp_transformer(model, has, fourier: bool) -> list:
  """Autoformer / FEDformer: embeddings, decomposition encoder and decoder, projection."""
  enc, dec = "encoder.attn_layers.{i}", "decoder.layers.{i}"
  rows = [
      *_embedding("enc_embedding", has), *_embedding("dec_embedding", has),
      (f"{enc}.attention.{_ATTN}_projection", "enc_{i}_attention/{p}", "linear"),
      (f"{enc}.{{c:conv1|conv2}}", "encoder_{i}/ff/{c}", "conv1x1"),
      (f"{dec}.{{a:self|cross}}_attention.{_ATTN}_projection", "dec_{i}_{a}_attention/{p}",
       "linear"),
      (f"{dec}.{{c:conv1|conv2}}", "decoder_{i}/ff/{c}", "conv1x1"),
      (f"{dec}.projection", "decoder_{i}/projection", "conv"),
      ("encoder.norm.layernorm", "encoder_norm/layernorm", "layer_norm"),
      ("decoder.norm.layernorm", "decoder_norm/layernorm", "layer_norm"),
      ("decoder.projection", "projection", "linear"),
  ]
  if fourier:
    # The reference gives every layer the same Fourier weights (one module object held by all
    # of them): one Flax parameter, listed once per layer so that both directions see each key.
    rows += [(f"encoder.attn_layers.{i}.attention.inner_correlation", "encoder_fourier",
              _FOURIER) for i in range(model.e_layers)]
    for i in range(model.d_layers):
      rows += [(f"decoder.layers.{i}.self_attention.inner_correlation", "decoder_fourier",
                _FOURIER),
               (f"decoder.layers.{i}.cross_attention.inner_correlation",
                "decoder_cross_fourier", _FOURIER)]
  return rows


@register_converter("autoformer")
def _autoformer(model, has):
  return _decomp_transformer(model, has, fourier=False)


@register_converter("fedformer")
def _fedformer(model, has):
  return _decomp_transformer(model, has, fourier=True)


@register_converter("timesnet")
def _timesnet(model, has):
  del model
  inception = {"weight": (PARAMS, "kernel_{j}", "conv2d"), "bias": (PARAMS, "bias_{j}", "copy")}
  return [
      *_embedding("enc_embedding", has),
      ("predict_linear", "predict_linear", "linear"),
      ("layer_norm", "layer_norm", "layer_norm"),
      ("projection", "projection", "linear"),
      # TimesBlock: Inception, GELU, Inception (Sequential indices 0 and 2).
      ("model.{i}.conv.0.kernels.{j}", "block_{i}/conv1", inception),
      ("model.{i}.conv.2.kernels.{j}", "block_{i}/conv2", inception),
  ]


@register_converter("micn")
def _micn(model, has):
  del model, has
  mic = "conv_trans.mic.{i}"
  return [
      ("dec_embedding.value_embedding.tokenConv", "dec_embedding/value", "conv"),
      # MICN embeds without time features; the reference builds the Linear anyway.
      (r"dec_embedding\.temporal_embedding(\..*)?", None, "unused"),
      ("regression", "", {"weight": (PARAMS, "regression_kernel", "linear"),
                          "bias": (PARAMS, "regression_bias", "copy")}),
      ("conv_trans.projection", "projection", "linear"),
      (f"{mic}.{{c:conv|isometric_conv}}.{{j}}", "mic_{i}/{c}_{j}", "conv"),
      (f"{mic}.conv_trans.{{j}}", "mic_{i}/conv_trans_{j}", "conv_transpose"),
      (f"{mic}.merge", "mic_{i}", {"weight": (PARAMS, "merge_kernel", "conv2d"),
                                   "bias": (PARAMS, "merge_bias", "copy")}),
      (f"{mic}.{{c:conv1|conv2}}", "mic_{i}/{c}", "conv1x1"),
      (f"{mic}.{{c:norm|norm1|norm2}}", "mic_{i}/{c}", "layer_norm"),
  ]
