"""PyTorch checkpoints: the student mappings, .pth files, teachers from .pth in a distillation,
and the JAX-vs-PyTorch parity of experiments/compare_pytorch.py. torch is an optional extra:
the tests that need it are skipped without it; the rest check the torch-free parts."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from timedistill_jax.configs import distill as distill_config
from timedistill_jax.configs import teacher as teacher_config
from timedistill_jax import convert, models
from timedistill_jax.errors import CheckpointError, ConfigError
from timedistill_jax.validation import validate_config

B, L, S, H, C = 4, 48, 8, 12, 7
ITR = dict(d_model=16, n_heads=2, e_layers=1, d_ff=16)


def _random_variables(model, seed=0):
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, L, C)),
                          jnp.zeros((1, L, 4)), jnp.zeros((1, S + H, 4)))
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(lambda s: 0.5 + rng.random(s.shape).astype(np.float32), shapes)


def _model(name, **kw):
  return models.get_model_class(name)(seq_len=L, label_len=S, pred_len=H, enc_in=C, **kw)


@pytest.mark.parametrize("name, keys", [
    ("dmlp", {f"Linear_{b}.{i}.{w}" for b in ("Seasonal", "Trend") for i in (0, 2)
              for w in ("weight", "bias")}
     | {f"bn{i}.{w}" for i in (1, 2) for w in ("weight", "bias", "running_mean", "running_var")}
     | {"revin_layer.affine_weight", "revin_layer.affine_bias"}),
    ("mlp", {f"Linear_Seasonal.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")}
     | {f"bn1.{w}" for w in ("weight", "bias", "running_mean", "running_var")}
     | {"revin_layer.affine_weight", "revin_layer.affine_bias"}),
])
def test_student_tables_use_the_reference_names(name, keys):
  model = _model(name, d_model=8)
  variables = _random_variables(model)
  sd = convert.to_torch(model, variables)
  assert set(sd) == keys
  assert sd["Linear_Seasonal.0.weight"].shape == (8, L)  # PyTorch [out, in]
  back = convert.from_torch(model, {**sd, "bn1.num_batches_tracked": np.array(3)}, variables)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, variables)


def test_read_pth_without_torch_names_the_extra(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
  with pytest.raises(ConfigError, match=r"install the torch extra: pip install -e \.\[torch\]"):
    convert.read_pth(tmp_path / "checkpoint.pth")


def _distill_config(pth, **teacher_model):
  config = distill_config.get_config(
      f"dataset=synthetic,teacher=itransformer,pred_len={H},student=mlp,smoke=True")
  config.data.seq_len, config.data.label_len = L, S
  config.train.progress = False
  config.model.d_model = 16
  config.teacher.torch_checkpoint = str(pth)
  config.teacher.model.update(dict(ITR, **teacher_model))
  return config


def test_config_with_torch_checkpoint_is_validated_without_torch(monkeypatch, tmp_path):
  config = _distill_config(tmp_path / "checkpoint.pth")
  assert config.teacher.workdir == ""  # a .pth alone is a teacher
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(ConfigError, match=r"install the torch extra: pip install -e \.\[torch\]"):
    validate_config(config)
  monkeypatch.setattr("timedistill_jax.convert.pth.torch_available", lambda: True)
  with pytest.raises(ConfigError, match="no file .*checkpoint.pth"):
    validate_config(config)
  (tmp_path / "checkpoint.pth").write_bytes(b"")
  config.teacher.model.depth = 3
  with pytest.raises(ConfigError, match=r"no setting\(s\) depth \(config.teacher.model\)"):
    validate_config(config)


def test_reference_settings_fill_the_teacher_model():
  config = distill_config.get_config("dataset=etth2,teacher=itransformer")
  assert dict(config.teacher.model) == dict(n_heads=8, dropout=0.1, activation="gelu",
                                            e_layers=2, d_model=128, d_ff=128)


def test_compare_script_without_torch_says_so(monkeypatch, capsys):
  from experiments import compare_pytorch
  monkeypatch.setattr(compare_pytorch, "torch", None)
  assert compare_pytorch.main([]) == 1
  assert capsys.readouterr().out.strip() == compare_pytorch.TORCH_MISSING


def test_reference_parity_script_says_what_is_missing(monkeypatch, capsys, tmp_path):
  from experiments import reference_parity
  monkeypatch.setattr(reference_parity, "torch", None)
  assert reference_parity.main(["--reference_dir", str(tmp_path)]) == 1
  assert capsys.readouterr().out.strip() == reference_parity.TORCH_MISSING
  monkeypatch.setattr(reference_parity, "torch", object())  # present: the folder is checked
  assert reference_parity.main(["--reference_dir", str(tmp_path)]) == 1
  assert "is not a TimeDistill checkout (no models/iTransformer.py)" in capsys.readouterr().out
  (tmp_path / "models").mkdir()
  (tmp_path / "models" / "iTransformer.py").write_text("")
  assert reference_parity.main(["--reference_dir", str(tmp_path), "--teachers", "lstm"]) == 1
  assert "unknown teacher(s) lstm" in capsys.readouterr().out


def test_reference_parity_args_follow_the_reference_layout():
  from experiments import reference_parity
  cfg = teacher_config.get_config("dataset=etth1,model=moderntcn,pred_len=96")
  args = reference_parity.reference_args("moderntcn", dict(cfg.model), seq_len=720, label_len=48,
                                         pred_len=96, channels=7)
  # The reference reads per-stage lists and builds downsampling layers for four stages.
  assert (args.num_blocks, args.large_size, args.small_size) == ([1], [51], [5])
  assert args.dims == args.dw_dims == [64] * 4 and (args.revin, args.affine) == (1, 0)
  assert (args.enc_in, args.c_out, args.seq_len) == (7, 7, 720)


# -- with torch -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_modules():
  torch = pytest.importorskip("torch")
  from experiments import pytorch_models
  torch.manual_seed(0)
  return torch, pytorch_models


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  x = (3 + 2 * rng.standard_normal((B, L, C))).astype(np.float32)
  return x, rng.uniform(-0.5, 0.5, (B, L, 4)).astype(np.float32)


@pytest.mark.parametrize("name", ["dmlp", "mlp"])
def test_student_matches_a_torch_build(torch_modules, name):
  torch, tm = torch_modules
  ref = tm.Student(L, H, C, d_model=8, decomposition=name == "dmlp").eval()
  with torch.no_grad():  # running statistics away from their defaults
    for key, t in ref.state_dict().items():
      if key.endswith(("running_mean", "running_var")):
        t.copy_(0.5 + torch.rand(t.shape))
  x, _ = _inputs()
  with torch.no_grad():
    pred_t, hidden_t = ref(torch.from_numpy(x))
  model = _model(name, d_model=8)
  variables = convert.from_torch(model, ref.state_dict(), _random_variables(model))
  pred, features = model.apply(variables, x)
  np.testing.assert_allclose(pred, pred_t.numpy(), atol=1e-5)
  np.testing.assert_allclose(features["hidden"], hidden_t.numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def teacher_pth(torch_modules, tmp_path_factory):
  """A compact PyTorch iTransformer saved as the reference saves it (``module.`` prefixed, as
  nn.DataParallel writes it)."""
  torch, tm = torch_modules
  ref = tm.ITransformer(L, H, **ITR).eval()
  path = tmp_path_factory.mktemp("ref") / "checkpoint.pth"
  torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, path)
  return ref, path


def test_pth_round_trip_gives_the_torch_predictions(torch_modules, teacher_pth):
  torch, _ = torch_modules
  ref, path = teacher_pth
  sd = convert.read_pth(path)
  assert set(sd) == set(ref.state_dict())
  teacher = convert.load_torch_teacher(path, dict(name="itransformer", **ITR), seq_len=L,
                                       label_len=S, pred_len=H, enc_in=C, num_time_features=4)
  x, x_mark = _inputs(1)
  with torch.no_grad():
    pred_t, hidden_t = ref(torch.from_numpy(x), torch.from_numpy(x_mark))
  pred, features = teacher.model.apply(teacher.variables, x, x_mark)
  np.testing.assert_allclose(pred, pred_t.numpy(), atol=1e-5)
  np.testing.assert_allclose(features["hidden"], hidden_t.numpy(), atol=1e-5)
  assert teacher.metadata["model"] == "itransformer"


def test_mismatched_pth_is_one_checkpoint_error(torch_modules, teacher_pth, tmp_path):
  torch, _ = torch_modules
  _, path = teacher_pth
  with pytest.raises(CheckpointError, match=r"does not fit itransformer .*d_model=32.*"
                                            r"'enc_embedding.value_embedding.weight'"):
    convert.load_torch_teacher(path, dict(name="itransformer", **dict(ITR, d_model=32)),
                               seq_len=L, label_len=S, pred_len=H, enc_in=C,
                               num_time_features=4)
  (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
  with pytest.raises(CheckpointError, match="could not read .*junk.pth"):
    convert.read_pth(tmp_path / "junk.pth")
  torch.save([1, 2], tmp_path / "list.pth")
  with pytest.raises(CheckpointError, match="holds no state dict"):
    convert.read_pth(tmp_path / "list.pth")


def test_distillation_from_a_pth_teacher(teacher_pth, tmp_path):
  from timedistill_jax.run import run
  _, path = teacher_pth
  bad = _distill_config(path, e_layers=2)
  with pytest.raises(CheckpointError, match="does not set: params/encoder/layer_1"):
    run(bad, tmp_path / "bad")
  results = run(_distill_config(path), tmp_path / "kd")
  saved = json.loads((tmp_path / "kd" / "results.json").read_text())
  assert saved["test"]["mse"] == results["test"]["mse"] > 0
  assert saved["teachers"] == [{"workdir": str(path), "model": "itransformer", "test": None,
                                "val": None}]


def test_compare_pytorch_parity_small(torch_modules):
  from experiments import compare_pytorch
  rng = np.random.default_rng(0)
  x, x_mark = _inputs(2)
  batch = {"x": x, "x_mark": x_mark, "y": rng.standard_normal((B, S + H, C)).astype(np.float32),
           "y_mark": rng.uniform(-0.5, 0.5, (B, S + H, 4)).astype(np.float32),
           "mask": np.ones(B, np.float32)}
  pair = compare_pytorch.Pair(batch, H, student="dmlp", d_model=16,
                              teacher=dict(ITR, dropout=0.1, activation="gelu"))
  diffs = compare_pytorch.parity(pair)
  for key, value in diffs.items():
    if key not in ("largest gradient entry", "loss value"):
      assert value < 1e-5, (key, value)
  # The timed steps of the speed comparisons run (their figures come from the benchmarks).
  runners = compare_pytorch.step_runners(pair)
  outputs = [o.detach().numpy() for o in pair.t_teacher(pair.t_batch["x"], pair.t_batch["x_mark"])]
  runners["torch cached"] = compare_pytorch.torch_step_runners(pair, outputs)["cached"]
  for name, step in runners.items():
    step()
