"""PyTorch ``.pth`` files -> state dicts -> ready teachers.

torch is imported here only, and only when a ``.pth`` file is read: it is an optional extra
(``pip install -e .[torch]``), never needed by the rest of the library.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from timedistill_jax.convert.core import from_torch
from timedistill_jax.errors import CheckpointError, ConfigError

TORCH_MISSING = ("reading a PyTorch checkpoint needs torch, which is not installed: install the "
                 "torch extra: pip install -e .[torch]")


def torch_available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def _state_dict_of(obj):
  """The state dict in what ``torch.load`` returned: the reference saves
  ``model.state_dict()``; training frameworks often wrap it in a dict."""
  if isinstance(obj, dict) and obj and all(hasattr(v, "detach") for v in obj.values()):
    return obj
  for key in ("state_dict", "model_state_dict", "model"):
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      return _state_dict_of(obj[key])
  return None


def read_pth(path) -> dict:
  """A ``.pth`` file's state dict as ``{name: numpy array}``.

  The ``module.`` prefix that ``nn.DataParallel`` adds (the reference's ``--use_multi_gpu``) is
  removed. Raises :class:`ConfigError` without torch and :class:`CheckpointError` for a file
  that is missing or holds no state dict.
  """
  try:
    import torch
  except ImportError as e:
    raise ConfigError(TORCH_MISSING) from e
  path = Path(path)
  if not path.is_file():
    raise CheckpointError(f"no PyTorch checkpoint at {path}.")
  try:
    # weights_only: a state dict needs no arbitrary unpickling.
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for a damaged or foreign file
    raise CheckpointError(f"could not read {path} as a PyTorch checkpoint: "
                          f"{type(e).__name__}: {str(e)[:300]}") from e
  state_dict = _state_dict_of(obj)
  if state_dict is None:
    raise CheckpointError(f"{path} holds no state dict (a dict of tensors, as "
                          "torch.save(model.state_dict(), path) writes).")
  strip = all(k.startswith("module.") for k in state_dict)
  return {(k[len("module."):] if strip else k): v.detach().cpu().float().numpy()
          if v.is_floating_point() else v.detach().cpu().numpy()
          for k, v in state_dict.items()}


def load_torch_teacher(path, model_config, *, seq_len: int, label_len: int, pred_len: int,
                       enc_in: int, num_time_features: int):
  """A :class:`~timedistill_jax.runs.Restored` teacher from a reference ``.pth`` file.

  ``model_config``: ``name`` and the hyperparameters the teacher was trained with (the
  reference's settings, ``timedistill_jax/configs/common.py``). A file that does not fit them is one
  :class:`CheckpointError` naming the first key or shape at fault.
  """
  from timedistill_jax.models import build_model
  from timedistill_jax.runs import Restored  # runs imports the converters only for a .pth

  cfg = ml_collections.ConfigDict(dict(model_config))
  model = build_model(cfg, seq_len=seq_len, label_len=label_len, pred_len=pred_len,
                      enc_in=enc_in)
  state_dict = read_pth(path)
  shapes = (jnp.zeros((1, seq_len, enc_in)), jnp.zeros((1, seq_len, num_time_features)),
            jnp.zeros((1, label_len + pred_len, num_time_features)))
  template = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), *shapes, train=False, mask=jnp.ones(1)))
  try:
    variables = from_torch(model, state_dict, template)
  except CheckpointError as e:
    settings = ", ".join(f"{k}={v}" for k, v in sorted(cfg.items()) if k != "name")
    raise CheckpointError(
        f"PyTorch teacher {path} does not fit {cfg.name} with L={seq_len}, H={pred_len}, "
        f"{enc_in} channels and {settings}: {e} Set the settings it was trained with, e.g. "
        "--config.teacher.model.d_model=..., or the run's --config.data.pred_len.") from e
  variables = jax.tree_util.tree_map(jnp.asarray, variables)
  metadata = {"model": cfg.name, "source": str(path), "config": {"model": cfg.to_dict()},
              "num_params": int(sum(np.size(x) for x in
                                    jax.tree_util.tree_leaves(variables.get("params", {}))))}
  return Restored(model=model, variables=variables, metadata=metadata, workdir=str(path))
