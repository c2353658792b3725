r"""Every teacher against the reference TimeDistill code: eval mode, training mode, gradients.

From the repository root:

  pip install -e .[torch]
  git clone https://github.com/LingFengGold/TimeDistill /somewhere/TimeDistill   # outside
  python -m experiments.reference_parity --reference_dir /somewhere/TimeDistill \
      --out results/reference_parity.md [--teachers patchtst,autoformer] [--seq_len 96]

For each teacher, with its ETTh1 settings (the ``teacher`` config): the reference model is built
from the clone with random weights, its state dict is converted (``convert.from_torch``), and on
the same ETTh1 training batch the script reports the largest absolute differences of

1. eval mode: the prediction and the distilled feature (the reference trainer's per-teacher
   reshape, docs/method.md "Teachers and their features", against our ``features["hidden"]``);
2. training mode with every dropout at 0 (what is left is what training computes differently:
   BatchNorm on batch statistics, Autoformer's batch-wide delays, ...): the prediction, the MSE
   loss, the gradient of every parameter (the reference's gradients converted like its weights)
   and the BatchNorm running statistics after the step;

and the parameter counts of both. Nothing of the reference is copied: it is imported from
``--reference_dir``. On the CPU, its MICN and Autoformer need the two hard-coded CUDA device
lines patched first (``device=torch.device('cuda:0')`` in models/MICN.py and ``.cuda()`` in
layers/AutoCorrelation.py: use the tensor's device). Optional imports of the reference's
attention module (reformer_pytorch, einops) are stubbed when missing: no teacher here uses them.
"""

import argparse
import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.compare_pytorch import real_batch
from timedistill_jax import convert
from timedistill_jax.configs import teacher as teacher_config
from timedistill_jax.models import build_model, count_params
from timedistill_jax.models.layers import multiscale_conv

try:
  import torch
except ImportError:
  torch = None

TORCH_MISSING = ("reference_parity.py needs torch: install the torch extra: "
                 "pip install -e .[torch]")
REFERENCE_NAMES = {"itransformer": "iTransformer", "moderntcn": "ModernTCN",
                   "timemixer": "TimeMixer", "patchtst": "PatchTST", "micn": "MICN",
                   "fedformer": "FEDformer", "timesnet": "TimesNet", "autoformer": "Autoformer"}
# run.py defaults of the reference that our configs leave implicit.
_REFERENCE_DEFAULTS = dict(
    task_name="long_term_forecast", output_attention=False, embed="timeF", freq="h",
    features="M", factor=1, moving_avg=25, dropout=0.1, activation="gelu", top_k=5,
    num_kernels=6, n_heads=8, e_layers=2, d_layers=1, d_ff=2048, d_model=512, use_norm=1,
    channel_independence=1, down_sampling_layers=0, down_sampling_window=1,
    down_sampling_method=None, decomp_method="moving_avg", num_class=1,
    # ModernTCN (lists: one entry per stage; one stage is used, the rest pads the reference's
    # downsample layers).
    stem_ratio=6, downsample_ratio=2, use_multi_scale=False, small_kernel_merged=False,
    subtract_last=0, individual=0, decomposition=0, kernel_size=25, head_dropout=0.0)


def reference_args(name: str, model_cfg: dict, *, seq_len, label_len, pred_len, channels):
  """The reference's ``args`` namespace for our teacher settings."""
  args = dict(_REFERENCE_DEFAULTS, seq_len=seq_len, label_len=label_len, pred_len=pred_len,
              enc_in=channels, dec_in=channels, c_out=channels)
  for key, value in model_cfg.items():
    if key != "name":
      args[key] = value
  if name == "moderntcn":
    for key in ("num_blocks", "large_size", "small_size"):
      args[key] = [model_cfg[key]]
    args["dims"] = args["dw_dims"] = [model_cfg["dims"]] * 4
    args["revin"], args["affine"] = int(model_cfg["revin"]), int(model_cfg["affine"])
  return types.SimpleNamespace(**args)


def reference_feature(name: str, features, channels: int, d_model: int):
  """The teacher feature the reference trainer distils (exp_long_term_forecasting.py)."""
  if name == "patchtst":  # [B*C, D, P] -> [B, C, D*P]
    f = features[-2]
    return f.reshape(-1, channels, f.shape[-2] * f.shape[-1])
  if name in ("fedformer", "autoformer"):
    return features[-2].permute(0, 2, 1)[:, :channels]
  if name == "timesnet":
    return features[-1].permute(0, 2, 1)[:, :, -d_model:]
  if name == "micn":
    return features[-2].permute(0, 2, 1)[:, :, -d_model:]
  if name == "moderntcn":
    return features[-2].flatten(-2)
  if name == "timemixer":
    return features[-1].permute(0, 2, 1)
  return features[-2][:, :channels]  # iTransformer: the variate tokens


@contextlib.contextmanager
def _no_hardcoded_dropout():
  """MICN's MIC blocks hard-code dropout 0.05 (as the reference does): off for the check."""
  saved = multiscale_conv.MIC_DROPOUT
  multiscale_conv.MIC_DROPOUT = 0.0
  try:
    yield
  finally:
    multiscale_conv.MIC_DROPOUT = saved


def _register_reference_packages(ref_dir: Path) -> None:
  """Makes each top-level folder of the clone (``models``, ``layers``, ``utils``, ...) an
  importable package rooted there, so that the reference's own absolute imports (``from
  layers.Embed import ...``) resolve inside the clone, which stays off the module search path."""
  for folder in sorted(p for p in ref_dir.iterdir() if p.is_dir() and any(p.glob("*.py"))):
    loaded = sys.modules.get(folder.name)
    if loaded is not None:
      if str(folder) in list(getattr(loaded, "__path__", [])):
        continue  # registered by an earlier call
      raise SystemExit(f"a module named {folder.name!r} is already imported from "
                       f"{getattr(loaded, '__file__', None) or loaded}; the reference's "
                       f"{folder} cannot be loaded under that name in this process")
    init = folder / "__init__.py"
    if init.is_file():
      spec = importlib.util.spec_from_file_location(folder.name, init,
                                                    submodule_search_locations=[str(folder)])
    else:  # a folder without __init__.py, as Python would import it from the clone's root
      spec = importlib.machinery.ModuleSpec(folder.name, None, is_package=True)
      spec.submodule_search_locations = [str(folder)]
    module = importlib.util.module_from_spec(spec)
    sys.modules[folder.name] = module
    if spec.loader is not None:
      spec.loader.exec_module(module)


def _stub_optional_imports() -> None:
  for missing in ("reformer_pytorch", "einops"):
    try:
      importlib.import_module(missing)
    except ImportError:
      stub = types.ModuleType(missing)
      stub.LSHSelfAttention = stub.rearrange = stub.repeat = None
      sys.modules[missing] = stub


def _maxabs(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def check(name: str, batch: dict, pred_len: int, seed: int = 0) -> dict:
  """One teacher: eval-mode and training-mode differences and parameter counts.

  ``batch``: windows from ``real_batch`` with a label part at least as long as the teacher's.
  """
  b, seq_len, channels = batch["x"].shape
  config = teacher_config.get_config(f"dataset=etth1,model={name},pred_len={pred_len}")
  label_len = config.data.label_len
  model_cfg = dict(config.model)
  ref_args = reference_args(name, model_cfg, seq_len=seq_len, label_len=label_len,
                            pred_len=pred_len, channels=channels)
  torch.manual_seed(seed)
  ref = importlib.import_module(f"models.{REFERENCE_NAMES[name]}").Model(ref_args).float()
  x, y = batch["x"], batch["y"][:, -pred_len:]
  x_mark, y_mark = batch["x_mark"], batch["y_mark"][:, -(label_len + pred_len):]
  dec = np.concatenate([x[:, -label_len:], np.zeros((b, pred_len, channels), np.float32)], 1)
  t_args = [torch.tensor(a) for a in (x, x_mark, dec, y_mark)]
  state = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}

  kw = {"mode_indices": convert.fedformer_mode_indices(ref)} if name == "fedformer" else {}
  model = build_model(dict(model_cfg, **kw), seq_len=seq_len, label_len=label_len,
                      pred_len=pred_len, enc_in=channels)
  args = tuple(jnp.asarray(a) for a in (x, x_mark, y_mark))
  template = jax.eval_shape(lambda: model.init(jax.random.key(0), *args))
  variables = convert.from_torch(model, state, template)
  row = dict(teacher=name, params_ours=count_params(variables),
             params_ref=sum(p.numel() for p in ref.parameters()))

  # 1. eval mode.
  ref.eval()
  with torch.no_grad():
    t_pred, t_feats = ref(*t_args)
  t_hidden = reference_feature(name, t_feats, channels, model_cfg.get("d_model", 0))
  pred, feats = jax.jit(lambda v, *a: model.apply(v, *a))(variables, *args)
  row["eval_pred"] = _maxabs(pred, t_pred.numpy())
  row["eval_hidden"] = _maxabs(feats["hidden"], t_hidden.numpy())

  # 2. training mode, dropout off on both sides.
  ref.train()
  for module in ref.modules():
    if isinstance(module, torch.nn.Dropout):
      module.p = 0.0
  t_pred, _ = ref(*t_args)
  t_loss = torch.mean((t_pred - torch.tensor(y)) ** 2)
  t_loss.backward()
  named = dict(ref.named_parameters(remove_duplicate=False))  # FEDformer shares its blocks
  grads = {k: (named[k].grad.numpy() if named[k].grad is not None else np.zeros_like(v))
           if k in named else v for k, v in state.items()}
  ref_grads = convert.from_torch(model, grads, template)["params"]
  ref_after = convert.from_torch(
      model, {k: v.detach().numpy() for k, v in ref.state_dict().items()}, template)

  train_model = model.clone(**{k: 0.0 for k in ("dropout", "head_dropout")
                               if hasattr(model, k)})
  rest = {k: v for k, v in variables.items() if k != "params"}
  mutable = list(rest) or False

  def loss_fn(params):
    out = train_model.apply({"params": params, **rest}, *args, train=True,
                            rngs={"dropout": jax.random.key(seed)}, mutable=mutable)
    (p, _), new_state = out if mutable else (out, {})
    return jnp.mean((p - y) ** 2), (p, new_state)

  with _no_hardcoded_dropout():
    (loss, (pred, new_state)), g = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        variables["params"])
  row["train_pred"] = _maxabs(pred, t_pred.detach().numpy())
  row["train_loss"] = abs(float(loss) - t_loss.item())
  g_ours, g_ref = jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref_grads)
  row["grad"] = max(_maxabs(a, b) for a, b in zip(g_ours, g_ref))
  row["grad_scale"] = max(float(np.max(np.abs(b))) for b in g_ref)
  row["running_stats"] = (max(_maxabs(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(new_state),
      jax.tree_util.tree_leaves({k: ref_after[k] for k in new_state})))
                          if new_state else None)
  return row


def markdown(rows, seq_len: int, pred_len: int, batch: int, source: str) -> str:
  fmt = lambda v: "-" if v is None else f"{v:.1e}"
  lines = [
      "# Teachers against the reference TimeDistill code", "",
      f"ETTh1 settings of each teacher, L={seq_len}, H={pred_len}, one batch of {batch} "
      f"{source} training windows, random reference weights converted with "
      "`convert.from_torch`. Largest absolute differences; training mode has every dropout at "
      "0; gradients of the MSE loss w.r.t. every parameter (the largest gradient in brackets); "
      "BatchNorm running statistics after that step. Written by "
      "`python -m experiments.reference_parity`.", "",
      "| teacher | params ours / reference | eval pred | eval feature | train pred | "
      "train loss | gradients | running stats |",
      "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    lines.append(
        f"| {r['teacher']} | {r['params_ours']:,} / {r['params_ref']:,} | "
        f"{fmt(r['eval_pred'])} | {fmt(r['eval_hidden'])} | {fmt(r['train_pred'])} | "
        f"{fmt(r['train_loss'])} | {fmt(r['grad'])} ({r['grad_scale']:.2g}) | "
        f"{fmt(r['running_stats'])} |")
  lines += ["", "Parameter counts differ only by reference parameters its forward never uses "
            "(ModernTCN's three unbuilt stages: 50,532; TimeMixer's two unused LayerNorms: 64; "
            "MICN's time-feature embedding: 2,048), as the teacher tests state."]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--reference_dir", required=True,
                      help="a clone of LingFengGold/TimeDistill (outside this project)")
  parser.add_argument("--teachers", default=",".join(REFERENCE_NAMES))
  parser.add_argument("--seq_len", type=int, default=96)
  parser.add_argument("--pred_len", type=int, default=96)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--out", default="results/reference_parity.md")
  opts = parser.parse_args(argv)
  if torch is None:
    print(TORCH_MISSING)
    return 1
  ref_dir = Path(opts.reference_dir).expanduser().resolve()
  if not (ref_dir / "models" / "iTransformer.py").is_file():
    print(f"{ref_dir} is not a TimeDistill checkout (no models/iTransformer.py): pass "
          "--reference_dir the folder of a clone of https://github.com/LingFengGold/TimeDistill")
    return 1
  names = [n.strip().lower() for n in opts.teachers.split(",") if n.strip()]
  unknown = sorted(set(names) - set(REFERENCE_NAMES))
  if unknown:
    print(f"unknown teacher(s) {', '.join(unknown)}; choose from {', '.join(REFERENCE_NAMES)}")
    return 1
  _register_reference_packages(ref_dir)
  _stub_optional_imports()
  longest_label = 96  # MICN's; the others use 48 and take the tail of the time features
  batch, source = real_batch(opts.batch, opts.seq_len, opts.pred_len, longest_label)
  rows = []
  for name in names:
    row = check(name, batch, opts.pred_len)
    print(f"{name:12s} eval pred {row['eval_pred']:.1e} feature {row['eval_hidden']:.1e} | "
          f"train pred {row['train_pred']:.1e} grad {row['grad']:.1e} "
          f"(of {row['grad_scale']:.2g}) | params {row['params_ours']} / {row['params_ref']}",
          flush=True)
    rows.append(row)
  out = Path(opts.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(markdown(rows, opts.seq_len, opts.pred_len, opts.batch, source))
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
