"""Reference state dicts -> Flax variables (timedistill_jax/convert/)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import helpers
from timedistill_jax import convert, models
from timedistill_jax.convert import from_torch
from timedistill_jax.errors import CheckpointError

L, H, C, D, FF = 16, 4, 3, 8, 12


def _rand(shape, seed=[0]):
  seed[0] += 1
  return np.random.default_rng(seed[0]).standard_normal(shape).astype(np.float32)


def itransformer():
  model = models.get_model_class("itransformer")(
      seq_len=L, label_len=0, pred_len=H, enc_in=C, d_model=D, n_heads=2, e_layers=1, d_ff=FF)
  sd = {"enc_embedding.value_embedding.weight": _rand((D, L)),
        "enc_embedding.value_embedding.bias": _rand((D,))}
  for proj in ("query", "key", "value", "out"):
    sd[f"encoder.attn_layers.0.attention.{proj}_projection.weight"] = _rand((D, D))
    sd[f"encoder.attn_layers.0.attention.{proj}_projection.bias"] = _rand((D,))
  sd.update({
      "encoder.attn_layers.0.conv1.weight": _rand((FF, D, 1)),
      "encoder.attn_layers.0.conv1.bias": _rand((FF,)),
      "encoder.attn_layers.0.conv2.weight": _rand((D, FF, 1)),
      "encoder.attn_layers.0.conv2.bias": _rand((D,))})
  for norm in ("encoder.attn_layers.0.norm1", "encoder.attn_layers.0.norm2", "encoder.norm"):
    sd[f"{norm}.weight"], sd[f"{norm}.bias"] = _rand((D,)), _rand((D,))
  sd["projection.weight"], sd["projection.bias"] = _rand((H, D)), _rand((H,))
  return model, sd


def template(model):
  x = jnp.zeros((1, L, C))
  return jax.eval_shape(model.init, jax.random.key(0), x, jnp.zeros((1, L, 4)))


def test_itransformer_mapping_and_layouts():
  model, sd = itransformer()
  v = from_torch(model, sd, template(model))["params"]
  np.testing.assert_array_equal(v["embedding"]["kernel"],
                                sd["enc_embedding.value_embedding.weight"].T)
  layer = v["encoder"]["layer_0"]
  np.testing.assert_array_equal(layer["attention"]["out"]["bias"],
                                sd["encoder.attn_layers.0.attention.out_projection.bias"])
  np.testing.assert_array_equal(layer["conv1"]["kernel"],
                                sd["encoder.attn_layers.0.conv1.weight"][:, :, 0].T)
  np.testing.assert_array_equal(layer["norm2"]["scale"], sd["encoder.attn_layers.0.norm2.weight"])
  np.testing.assert_array_equal(v["projection"]["kernel"], sd["projection.weight"].T)
  pred, _ = model.apply({"params": v}, jnp.ones((2, L, C)), jnp.zeros((2, L, 4)))
  assert pred.shape == (2, H, C) and np.all(np.isfinite(pred))


def test_moderntcn_conv_batchnorm_and_unused_keys():
  model = models.get_model_class("moderntcn")(
      seq_len=L, label_len=0, pred_len=H, enc_in=C, dims=4, ffn_ratio=2, large_size=5,
      small_size=3)
  t = template(model)
  blk = "model.stages.0.blocks.0"
  sd = {"model.downsample_layers.0.0.weight": _rand((4, 1, 8)),
        "model.downsample_layers.0.0.bias": _rand((4,)),
        "model.head.linear.weight": _rand((H, 4 * 4)), "model.head.linear.bias": _rand((H,)),
        f"{blk}.dw.lkb_origin.conv.weight": _rand((C * 4, 1, 5)),
        f"{blk}.dw.small_conv.conv.weight": _rand((C * 4, 1, 3)),
        f"{blk}.ffn1pw1.weight": _rand((C * 8, 4, 1)), f"{blk}.ffn1pw1.bias": _rand((C * 8,)),
        f"{blk}.ffn1pw2.weight": _rand((C * 4, 8, 1)), f"{blk}.ffn1pw2.bias": _rand((C * 4,)),
        f"{blk}.ffn2pw1.weight": _rand((4 * C * 2, C, 1)),
        f"{blk}.ffn2pw1.bias": _rand((4 * C * 2,)),
        f"{blk}.ffn2pw2.weight": _rand((4 * C, C * 2, 1)), f"{blk}.ffn2pw2.bias": _rand((4 * C,)),
        # Reference modules off the forward path: dropped.
        "model.te_patch.0.weight": _rand((4, 1, 8)), "model.lat_layer.0.bias": _rand((4,))}
  for bn, n in (("model.downsample_layers.0.1", 4), (f"{blk}.dw.lkb_origin.bn", C * 4),
                (f"{blk}.dw.small_conv.bn", C * 4), (f"{blk}.norm", 4)):
    sd.update({f"{bn}.weight": _rand((n,)), f"{bn}.bias": _rand((n,)),
               f"{bn}.running_mean": _rand((n,)), f"{bn}.running_var": 1 + _rand((n,)) ** 2,
               f"{bn}.num_batches_tracked": np.array(7)})
  v = from_torch(model, sd, t)
  np.testing.assert_array_equal(v["params"]["stem"]["kernel"],
                                sd["model.downsample_layers.0.0.weight"][:, 0, :].T)
  np.testing.assert_array_equal(v["params"]["block_0"]["large_conv"]["kernel"],
                                np.transpose(sd[f"{blk}.dw.lkb_origin.conv.weight"], (2, 1, 0)))
  np.testing.assert_array_equal(v["batch_stats"]["block_0"]["norm"]["var"],
                                sd[f"{blk}.norm.running_var"])
  np.testing.assert_array_equal(v["params"]["block_0"]["ffn2_pw1"]["kernel"],
                                sd[f"{blk}.ffn2pw1.weight"][:, :, 0].T)


def test_wrong_shape_names_key_and_shapes():
  model, sd = itransformer()
  sd["projection.weight"] = _rand((H + 1, D))
  with pytest.raises(CheckpointError, match=r"'projection.weight'.*expected shape \(8, 4\), "
                                            r"given \(8, 5\)"):
    from_torch(model, sd, template(model))


def test_missing_key():
  model, sd = itransformer()
  del sd["encoder.norm.bias"]
  with pytest.raises(CheckpointError, match="does not set: params/encoder/norm/bias"):
    from_torch(model, sd, template(model))


def test_extra_key():
  model, sd = itransformer()
  sd["decoder.layers.0.weight"] = _rand((2, 2))
  with pytest.raises(CheckpointError, match="'decoder.layers.0.weight' has no target"):
    from_torch(model, sd, template(model))
  model, sd = itransformer()
  sd["encoder.attn_layers.1.conv1.weight"] = _rand((FF, D, 1))  # a layer the model lacks
  with pytest.raises(CheckpointError, match="layer_1/conv1/kernel, which ITransformer does not"):
    from_torch(model, sd, template(model))


def test_itransformer_matches_a_torch_build():
  torch = pytest.importorskip("torch")
  nn = torch.nn

  class Attention(nn.Module):
    def __init__(self):
      super().__init__()
      self.query_projection, self.key_projection = nn.Linear(D, D), nn.Linear(D, D)
      self.value_projection, self.out_projection = nn.Linear(D, D), nn.Linear(D, D)

    def forward(self, x):
      split = lambda t: t.view(t.shape[0], t.shape[1], 2, D // 2).transpose(1, 2)
      q, k, v = (split(p(x)) for p in (self.query_projection, self.key_projection,
                                       self.value_projection))
      a = torch.softmax(q @ k.transpose(-1, -2) / (D // 2) ** 0.5, dim=-1) @ v
      return self.out_projection(a.transpose(1, 2).reshape(x.shape))

  class Layer(nn.Module):  # TSLib EncoderLayer, post-norm, kernel-1 convolutions
    def __init__(self):
      super().__init__()
      self.attention = Attention()
      self.conv1, self.conv2 = nn.Conv1d(D, FF, 1), nn.Conv1d(FF, D, 1)
      self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)

    def forward(self, x):
      x = self.norm1(x + self.attention(x))
      y = self.conv2(torch.nn.functional.gelu(self.conv1(x.transpose(1, 2)))).transpose(1, 2)
      return self.norm2(x + y)

  class Encoder(nn.Module):
    def __init__(self):
      super().__init__()
      self.attn_layers, self.norm = nn.ModuleList([Layer()]), nn.LayerNorm(D)

  class Embedding(nn.Module):
    def __init__(self):
      super().__init__()
      self.value_embedding = nn.Linear(L, D)

  class Ref(nn.Module):
    def __init__(self):
      super().__init__()
      self.enc_embedding, self.encoder = Embedding(), Encoder()
      self.projection = nn.Linear(D, H)

    def forward(self, x, x_mark):
      mean = x.mean(1, keepdim=True)
      std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
      tokens = torch.cat([((x - mean) / std).transpose(1, 2), x_mark.transpose(1, 2)], 1)
      h = self.enc_embedding.value_embedding(tokens)
      h = self.encoder.norm(self.encoder.attn_layers[0](h))
      pred = self.projection(h).transpose(1, 2)[:, :, :C]
      return pred * std + mean, h[:, :C]

  torch.manual_seed(0)
  ref = Ref().eval()
  x = torch.from_numpy(3 + 2 * _rand((2, L, C)))
  x_mark = torch.from_numpy(_rand((2, L, 4)))
  with torch.no_grad():
    pred_t, hidden_t = ref(x, x_mark)
  model = itransformer()[0]
  variables = from_torch(model, ref.state_dict(), template(model))
  pred, features = model.apply(variables, x.numpy(), x_mark.numpy())
  np.testing.assert_allclose(pred, pred_t.numpy(), atol=1e-5)
  np.testing.assert_allclose(features["hidden"], hidden_t.numpy(), atol=1e-5)


# ---- MICN, FEDformer, TimesNet and Autoformer: round trip through the reference's names ----

REFERENCE_KEYS = {
    "autoformer": {"enc_embedding.value_embedding.tokenConv.weight": (16, 3, 3),
                   "encoder.attn_layers.0.conv1.weight": (32, 16, 1),
                   "decoder.layers.0.projection.weight": (3, 16, 3)},
    "fedformer": {"encoder.attn_layers.0.attention.inner_correlation.weights1": (8, 2, 2, 4),
                  "decoder.layers.0.cross_attention.query_projection.weight": (16, 16)},
    "timesnet": {"model.0.conv.0.kernels.1.weight": (16, 16, 3, 3),
                 "predict_linear.weight": (40, 32)},
    "micn": {"conv_trans.mic.0.conv_trans.0.weight": (16, 16, 12),
             "conv_trans.mic.0.merge.weight": (16, 16, 2, 1),
             "regression.weight": (8, 32)},
}


@pytest.mark.parametrize("name", sorted(REFERENCE_KEYS))
def test_convert_round_trip_and_errors(name):
  model = helpers.build(name)  # the small widths of tests/helpers.py, L 32, H 8, C 3
  variables = helpers.random_variables(model, helpers.inputs())
  sd = convert.to_torch(model, variables)
  for key, shape in REFERENCE_KEYS[name].items():
    assert sd[key].shape == shape, key
  sd["enc_embedding.position_embedding.pe"] = np.zeros((1, 5000, 16), np.float32)  # skipped
  zeros = jax.tree_util.tree_map(np.zeros_like, variables)
  out = convert.from_torch(model, sd, zeros)  # no model call: fast
  jax.tree_util.tree_map(np.testing.assert_array_equal, out["params"], variables["params"])

  key = next(iter(REFERENCE_KEYS[name]))
  bad = {**sd, key: np.zeros(sd[key].shape + (1,), np.float32)}
  with pytest.raises(CheckpointError, match=rf"checkpoint key '{re.escape(key)}'"):
    convert.from_torch(model, bad, zeros)
  with pytest.raises(CheckpointError, match="the checkpoint does not set: params/"):
    convert.from_torch(model, {k: v for k, v in sd.items() if k != key}, zeros)
  with pytest.raises(CheckpointError, match="'extra.weight' has no target"):
    convert.from_torch(model, {**sd, "extra.weight": np.zeros(1)}, zeros)


def test_convert_fedformer_shared_weights_must_agree():
  model = helpers.build("fedformer", e_layers=2)
  variables = jax.eval_shape(model.init, jax.random.key(0), *helpers.inputs())
  variables = jax.tree_util.tree_map(lambda s: np.ones(s.shape, s.dtype), variables)
  sd = convert.to_torch(model, variables)
  key = "encoder.attn_layers.1.attention.inner_correlation.weights1"
  sd[key] = sd[key] + 1.0
  with pytest.raises(CheckpointError, match="shared parameter params/encoder_fourier/weights1 "
                                            "differs under keys"):
    convert.from_torch(model, sd, variables)
