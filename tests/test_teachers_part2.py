"""MICN, FEDformer, TimesNet and Autoformer: the model contract, their layers against NumPy,
parameter counts against the PyTorch reference, and the state_dict conversion."""

import math
import re

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from timedistill_jax import convert
from timedistill_jax import models
from timedistill_jax.errors import CheckpointError
from timedistill_jax.models.layers import (
    autocorrelation, decomp_transformer, embedding, fourier, period_conv)
from timedistill_jax.models.layers.multiscale_conv import StridedConvTranspose1d

B, L, LABEL_LEN, H, C, F = 2, 32, 16, 8, 3, 4

# Small widths for the registry-wide tests (merged into tests/test_models.py).
SMALL_KWARGS = {
    "autoformer": dict(d_model=16, n_heads=2, e_layers=1, d_layers=1, d_ff=32),
    "fedformer": dict(d_model=16, n_heads=8, e_layers=1, d_layers=1, d_ff=32, modes=4),
    "timesnet": dict(d_model=16, d_ff=16, e_layers=1, top_k=2, num_kernels=2),
    "micn": dict(d_model=16, d_layers=1),
}
NAMES = sorted(SMALL_KWARGS)

# Parameters the reference model also never uses (merged into tests/test_models.py): FEDformer's
# Fourier blocks read only the queries (self) or queries and keys (cross), so those layers'
# key / value projections get no gradient, in the reference as here.
UNUSED_PARAMS = {
    "fedformer": {("enc_0_attention", "key"), ("enc_0_attention", "value"),
                  ("dec_0_self_attention", "key"), ("dec_0_self_attention", "value"),
                  ("dec_0_cross_attention", "value")},
}


def build(name, **overrides):
  cfg = ml_collections.ConfigDict(dict(name=name, **{**SMALL_KWARGS[name], **overrides}))
  return models.build_model(cfg, seq_len=L, label_len=LABEL_LEN, pred_len=H, enc_in=C)


def inputs(num_marks=F, seed=0):
  kx, km, ky = jax.random.split(jax.random.key(seed), 3)
  x = 3.0 + 2.0 * jax.random.normal(kx, (B, L, C))
  x_mark = jax.random.uniform(km, (B, L, num_marks), minval=-0.5, maxval=0.5)
  y_mark = jax.random.uniform(ky, (B, LABEL_LEN + H, num_marks), minval=-0.5, maxval=0.5)
  return x, x_mark, y_mark


def random_variables(model, args, seed=0):
  """Variables with the model's shapes and random values, without compiling ``init``.

  On a small CPU, compiling dominates these tests and ``init`` compiles slower than a forward
  pass; the contract does not depend on the initial values.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(1), *args)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda s: 0.1 * rng.standard_normal(s.shape).astype(s.dtype), shapes)


def _contract_outputs(model, variables, args):
  """Everything the contract tests need, in one jitted function (one compilation per model)."""
  k1, k2 = jax.random.split(jax.random.key(6))
  w_pred = jax.random.normal(k1, (B, H, C))
  w_hidden = jax.random.normal(k2, (B, C, model.feature_dim))

  def loss(params):
    pred, feats = model.apply({**variables, "params": params}, *args, train=True,
                              rngs={"dropout": jax.random.key(7)})
    return jnp.sum(pred * w_pred) + jnp.sum(feats["hidden"] * w_hidden), (pred, feats)

  # The loss's forward pass is the training-mode output.
  grads, train_out = jax.grad(loss, has_aux=True)(variables["params"])
  return dict(
      eval=model.apply(variables, *args),
      eval_rng=model.apply(variables, *args, rngs={"dropout": jax.random.key(4)}),
      train=train_out,
      grads=grads)


@pytest.fixture(scope="module", params=NAMES)
def setup(request):
  name = request.param
  model = build(name)
  args = inputs()
  variables = random_variables(model, args)
  out = jax.jit(lambda v, *a: _contract_outputs(model, v, a))(variables, *args)
  return name, model, args, {**out, "variables": variables}


def test_shapes_and_finite(setup):
  _, model, _, out = setup
  for pred, feats in (out["eval"], out["train"]):
    assert pred.shape == (B, H, C)
    assert feats["hidden"].shape == (B, C, model.feature_dim)
    assert np.all(np.isfinite(pred)) and np.all(np.isfinite(feats["hidden"]))


@pytest.mark.parametrize("name", NAMES)
def test_no_time_features(name):
  # F = 0 (Solar): the embeddings have no temporal part and the model still runs.
  model = build(name)
  args = inputs(num_marks=0)

  variables = random_variables(model, args)
  assert "temporal" not in str(jax.tree_util.tree_structure(variables))
  pred, feats = jax.jit(lambda v, *a: model.apply(v, *a))(variables, *args)
  assert pred.shape == (B, H, C)
  assert feats["hidden"].shape == (B, C, model.feature_dim)
  assert np.all(np.isfinite(pred)) and np.all(np.isfinite(feats["hidden"]))


def test_jit_equals_eager(setup):
  _, model, args, out = setup
  eager = model.apply(out["variables"], *args)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                         eager, out["eval"])


def test_dropout_only_in_training(setup):
  _, _, _, out = setup
  jax.tree_util.tree_map(np.testing.assert_array_equal, out["eval"], out["eval_rng"])
  assert not np.allclose(out["train"][0], out["eval"][0])


def test_every_parameter_gets_gradient(setup):
  name, _, _, out = setup
  grads = flax.traverse_util.flatten_dict(out["grads"])
  exempt = UNUSED_PARAMS.get(name, set())
  missing = ["/".join(p) for p, g in grads.items()
             if not any(p[:len(e)] == e for e in exempt)
             and not (np.all(np.isfinite(g)) and np.any(g != 0))]
  assert not missing, f"no (finite) gradient for: {missing}"
  for path in exempt:  # and the exempt ones really are unused
    assert all(not np.any(g) for p, g in grads.items() if p[:len(path)] == path)


# ---- parameter counts at the ETTh1 shape (C = 7, L = 720), PAPER.md s.9 settings ----
# Reference counts: sum(p.numel() for p in model.parameters()) of LingFengGold/TimeDistill's
# models, measured with torch 2.13. MICN's reference builds a time-feature Linear (4 x d_model
# for freq 'h') that its forward never calls; the Flax model has none, hence ref = ours + 2048.
ETTH1 = {
    "micn": (dict(d_model=512), 96, {96: 49_113_703, 336: 58_461_783}, 2048),
    "fedformer": (dict(d_model=512, d_ff=2048), 48, {96: 16_827_399, 336: 16_827_399}, 0),
    "timesnet": (dict(d_model=16, d_ff=32), 48, {96: 1_175_191, 336: 1_348_231}, 0),
    "autoformer": (dict(d_model=512, d_ff=2048, factor=3), 48,
                   {96: 10_535_943, 336: 10_535_943}, 0),
}
REFERENCE_ETTH1 = {
    "micn": {96: 49_115_751, 336: 58_463_831},
    "fedformer": {96: 16_827_399, 336: 16_827_399},
    "timesnet": {96: 1_175_191, 336: 1_348_231},
    "autoformer": {96: 10_535_943, 336: 10_535_943},
}


@pytest.mark.parametrize("pred_len", [96, 336])
@pytest.mark.parametrize("name", NAMES)
def test_etth1_parameter_count(name, pred_len):
  kwargs, label_len, counts, unused_in_reference = ETTH1[name]
  model = models.get_model_class(name)(seq_len=720, label_len=label_len, pred_len=pred_len,
                                       enc_in=7, **kwargs)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 720, 7)), jnp.zeros((1, 720, 4)),
      jnp.zeros((1, label_len + pred_len, 4))))
  count = sum(x.size for x in jax.tree_util.tree_leaves(shapes["params"]))
  assert count == counts[pred_len]
  assert count + unused_in_reference == REFERENCE_ETTH1[name][pred_len]


# ---- layers against NumPy ----

def _np_positional(length, d):
  pos = np.arange(length)[:, None]
  div = np.exp(np.arange(0, d, 2) * -(math.log(10000.0) / d))
  table = np.zeros((length, d))
  table[:, 0::2], table[:, 1::2] = np.sin(pos * div), np.cos(pos * div)
  return table


def test_data_embedding_matches_numpy():
  x, x_mark, _ = inputs()
  module = embedding.DataEmbedding(8, dropout=0.0)
  v = module.init(jax.random.key(0), x, x_mark, train=False)
  out = np.asarray(module.apply(v, x, x_mark, train=False))
  w = np.asarray(v["params"]["value"]["kernel"])  # [3, C, D]
  xn = np.asarray(x)
  xp = np.concatenate([xn[:, -1:], xn, xn[:, :1]], axis=1)
  value = sum(xp[:, k:k + L] @ w[k] for k in range(3))
  want = value + np.asarray(x_mark) @ np.asarray(v["params"]["temporal"]["kernel"])
  np.testing.assert_allclose(out, want + _np_positional(L, 8), atol=1e-5)
  # wo-pos variant and F = 0: value only.
  module = embedding.DataEmbedding(8, dropout=0.0, with_pos=False)
  out = module.apply({"params": {"value": v["params"]["value"]}}, x, x_mark[..., :0], train=False)
  np.testing.assert_allclose(out, value, atol=1e-5)


def _np_auto_correlation(q, k, v, factor, train):
  length = q.shape[1]
  corr = np.fft.irfft(np.fft.rfft(q, axis=1) * np.conj(np.fft.rfft(k, axis=1)), n=length, axis=1)
  mean_corr = corr.mean(axis=(2, 3))  # [B, L]
  top_k = int(factor * math.log(length))
  out = np.zeros_like(v)
  for b in range(q.shape[0]):
    delays = (np.argsort(-mean_corr.mean(0))[:top_k] if train
              else np.argsort(-mean_corr[b])[:top_k])
    w = np.exp(mean_corr[b, delays] - mean_corr[b, delays].max())
    w /= w.sum()
    for d, wi in zip(delays, w):
      out[b] += wi * np.roll(v[b], -d, axis=0)
  return out


@pytest.mark.parametrize("train", [False, True])
def test_auto_correlation_matches_numpy(train):
  rng = np.random.default_rng(0)
  q, k, v = (rng.standard_normal((3, 20, 2, 4)).astype(np.float32) for _ in range(3))
  out = autocorrelation.auto_correlation(q, k, v, factor=2, train=train)
  np.testing.assert_allclose(out, _np_auto_correlation(q, k, v, 2, train), atol=1e-5)
  # Keys and values longer than the queries are cut, shorter ones zero-padded.
  out = autocorrelation.auto_correlation(q[:, :12], k, v, factor=1, train=train)
  np.testing.assert_allclose(out, _np_auto_correlation(q[:, :12], k[:, :12], v[:, :12], 1, train),
                             atol=1e-5)


def test_frequency_modes_seeded_as_numpy():
  np.random.seed(3)
  want = list(range(20))
  np.random.shuffle(want)
  got = fourier.frequency_modes(40, 5, "random", np.random.RandomState(3))
  assert got == tuple(sorted(want[:5]))
  assert fourier.frequency_modes(40, 64, "low", None) == tuple(range(20))


def test_fourier_block_matches_numpy():
  rng = np.random.default_rng(1)
  q = rng.standard_normal((2, 12, 8, 2)).astype(np.float32)
  index = (0, 3, 5, 6)  # of the 12 // 2 + 1 = 7 frequencies; mode i is written to slot i
  block = fourier.FourierBlock(16, index)
  v = block.init(jax.random.key(0), q)
  w = np.asarray(v["params"]["weights1"]) + 1j * np.asarray(v["params"]["weights2"])
  x_ft = np.fft.rfft(q.transpose(0, 2, 3, 1), axis=-1)  # [B, h, E, 7]
  out_ft = np.zeros_like(x_ft)
  for wi, i in enumerate(index):
    out_ft[..., wi] = np.einsum("bhi,hio->bho", x_ft[..., i], w[..., wi])
  want = np.fft.irfft(out_ft, n=12, axis=-1).reshape(2, 12, 8, 2)  # the reference's raw view
  np.testing.assert_allclose(block.apply(v, q), want, atol=1e-6)


def test_fourier_cross_attention_matches_numpy():
  rng = np.random.default_rng(4)
  q = rng.standard_normal((2, 10, 2, 3)).astype(np.float32)
  k = rng.standard_normal((2, 16, 2, 3)).astype(np.float32)
  index_q, index_kv = (1, 2, 7), (0, 4, 6, 8)  # q has 6 frequencies: mode 7 is dropped
  block = fourier.FourierCrossAttention(6, 2, index_q, index_kv)
  v = block.init(jax.random.key(0), q, k)
  w = np.asarray(v["params"]["weights1"]) + 1j * np.asarray(v["params"]["weights2"])
  xq = np.fft.rfft(q.transpose(0, 2, 3, 1), axis=-1)
  xk = np.fft.rfft(k.transpose(0, 2, 3, 1), axis=-1)
  sel_q = np.stack([xq[..., j] if j < 6 else 0 * xq[..., 0] for j in index_q], -1)
  sel_k = xk[..., list(index_kv)]
  qk = np.einsum("bhex,bhey->bhxy", sel_q, sel_k)
  qk = np.tanh(qk.real) + 1j * np.tanh(qk.imag)
  mixed = np.einsum("bhex,heox->bhox", np.einsum("bhxy,bhey->bhex", qk, sel_k), w)
  out_ft = np.zeros_like(xq)
  for i, j in enumerate(index_q):
    if j < 6:
      out_ft[..., j] = mixed[..., i]
  want = np.fft.irfft(out_ft / 36, n=10, axis=-1).reshape(2, 10, 2, 3)
  np.testing.assert_allclose(block.apply(v, q, k), want, atol=1e-6)


def test_seasonal_layer_norm_matches_numpy():
  x = np.random.default_rng(5).standard_normal((2, 7, 4)).astype(np.float32) + 3
  module = decomp_transformer.SeasonalLayerNorm()
  v = module.init(jax.random.key(0), x)
  x_hat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
  want = x_hat - x_hat.mean(1, keepdims=True)
  np.testing.assert_allclose(module.apply(v, x), want, atol=1e-5)


def _np_gelu(x):
  return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _np_conv2d_same(g, w, b):  # g: [B, R, P, Din], w: [k, k, Din, Dout]
  k = w.shape[0]
  h = k // 2
  gp = np.pad(g, ((0, 0), (h, h), (h, h), (0, 0)))
  rows, cols = g.shape[1:3]
  return sum(gp[:, i:i + rows, j:j + cols] @ w[i, j] for i in range(k) for j in range(k)) + b


def _np_inception(g, params, prefix_count):
  return sum(_np_conv2d_same(g, np.asarray(params[f"kernel_{i}"]), np.asarray(params[f"bias_{i}"]))
             for i in range(prefix_count)) / prefix_count


def test_times_block_matches_numpy_grid():
  rng = np.random.default_rng(2)
  length, d = 26, 4
  x = rng.standard_normal((2, length, d)).astype(np.float32)
  x[:, :, 0] += 3 * np.sin(2 * np.pi * np.arange(length) / 7)  # a non-dividing period
  block = period_conv.TimesBlock(d, 6, top_k=3, num_kernels=3)
  shapes = jax.eval_shape(block.init, jax.random.key(0), x)
  # Random weights and non-zero biases (the initial biases are zero).
  v = jax.tree_util.tree_map(lambda s: 0.3 * rng.standard_normal(s.shape).astype(np.float32),
                             shapes)
  p = v["params"]
  amp = np.abs(np.fft.rfft(x, axis=1))
  spectrum = amp.mean(axis=(0, 2))
  spectrum[0] = 0
  top = np.argsort(-spectrum)[:3]
  res = []
  for f in top:
    period = length // f
    rows = -(-length // period)
    g = np.pad(x, ((0, 0), (0, rows * period - length), (0, 0))).reshape(2, rows, period, d)
    g = _np_inception(_np_gelu(_np_inception(g, p["conv1"], 3)), p["conv2"], 3)
    res.append(g.reshape(2, -1, d)[:, :length])
  w = np.exp(amp.mean(-1)[:, top])
  w /= w.sum(1, keepdims=True)
  want = np.einsum("kbtd,bk->btd", np.stack(res), w) + x
  np.testing.assert_allclose(jax.jit(block.apply)(v, x), want, atol=1e-4)


def test_padded_frame_length():
  # T = 26: period 26 // 3 = 8 needs 4 rows of 8 = 32 steps, the largest of all candidates.
  assert period_conv.padded_frame_length(26) == 32
  assert period_conv.padded_frame_length(816) == 978


def test_strided_conv_transpose_matches_numpy():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 5, 3)).astype(np.float32)
  layer = StridedConvTranspose1d(4, 3)
  v = layer.init(jax.random.key(0), x)
  w, b = np.asarray(v["params"]["kernel"]), np.asarray(v["params"]["bias"])  # [k, in, out]
  want = np.zeros((2, 15, 4)) + b
  for n in range(5):  # output window n covers steps 3n .. 3n + 2
    for j in range(3):
      want[:, 3 * n + j] += x[:, n] @ w[j]
  np.testing.assert_allclose(layer.apply(v, x), want, atol=1e-5)


# ---- conversion from reference state_dicts ----

def _reference_state_dict(name, model, variables):
  """A state_dict with the reference's names and PyTorch layouts, made from Flax variables."""
  del name
  return convert.to_torch(model, variables)


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


def test_convert_round_trip_and_errors(setup):
  name, model, _, out = setup
  variables = out["variables"]
  sd = _reference_state_dict(name, model, variables)
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
  model = build("fedformer", e_layers=2)
  variables = jax.eval_shape(model.init, jax.random.key(0), *inputs())
  variables = jax.tree_util.tree_map(lambda s: np.ones(s.shape, s.dtype), variables)
  sd = _reference_state_dict("fedformer", model, variables)
  key = "encoder.attn_layers.1.attention.inner_correlation.weights1"
  sd[key] = sd[key] + 1.0
  with pytest.raises(CheckpointError, match="shared parameter params/encoder_fourier/weights1 "
                                            "differs under keys"):
    convert.from_torch(model, sd, variables)


def test_fedformer_modes_seeded_and_overridable():
  model = build("fedformer", mode_seed=7)
  enc, dec, cross_q, cross_kv = model.indices()
  assert len(enc) == 4 and all(i < L // 2 for i in enc)
  assert model.indices() == build("fedformer", mode_seed=7).indices()
  given = ((0, 1, 2, 3), (0, 1, 2, 3), (0, 1, 2, 3), (4, 5, 6, 7))
  assert build("fedformer", mode_indices=given).indices() == given


# ---- more variates than d_model (Traffic: C = 862 > 512; Solar FEDformer: 137 > 64) ----

@pytest.mark.parametrize("name", ["autoformer", "fedformer"])
def test_hidden_has_min_c_d_model_rows_and_distils(name):
  # The reference takes features[-2].permute(0, 2, 1)[:, :C]: only d_model rows exist when
  # C > d_model (checked against the reference model at C = 20, d_model = 16: max diff 3e-6),
  # and its trainer then cuts the student's features to those rows.
  from timedistill_jax import distill
  from timedistill_jax.train_state import make_optimizer

  wide = 20
  model = models.build_model(ml_collections.ConfigDict(dict(name=name, **SMALL_KWARGS[name])),
                             seq_len=L, label_len=LABEL_LEN, pred_len=H, enc_in=wide)
  kx, km, ky = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (B, L, wide))
  x_mark = jax.random.uniform(km, (B, L, F), minval=-0.5, maxval=0.5)
  y_mark = jax.random.uniform(ky, (B, LABEL_LEN + H, F), minval=-0.5, maxval=0.5)
  variables = random_variables(model, (x, x_mark, y_mark))
  pred, feats = jax.jit(model.apply)(variables, x, x_mark, y_mark)
  assert pred.shape == (B, H, wide)
  assert feats["hidden"].shape == (B, SMALL_KWARGS[name]["d_model"], L)

  student = models.build_model(ml_collections.ConfigDict(dict(
      name="mlp", d_model=8, norm="non-stationary", moving_avg=25)),
      seq_len=L, label_len=LABEL_LEN, pred_len=H, enc_in=wide)
  batch = dict(x=x, x_mark=x_mark, y_mark=y_mark, y=jax.random.normal(ky, (B, LABEL_LEN + H, wide)),
               mask=jnp.ones((B,), jnp.float32))
  optim = ml_collections.ConfigDict(dict(lr=0.01, schedule="type1", weight_decay=0.0))
  state = distill.create_distill_state(student, [model], make_optimizer(optim, 1, 1),
                                       jax.random.key(1), batch)
  _, metrics = distill.cached_distill_step(
      state, batch | {"teacher_pred": (pred,), "teacher_hidden": (feats["hidden"],)},
      student=student, regressor=distill.Regressor(student.feature_dim),
      loss=distill.LossConfig(alpha=1.0, beta=1.0), pred_len=H)
  assert np.isfinite(float(metrics["feat_scale"])) and np.isfinite(float(metrics["feat_period"]))
