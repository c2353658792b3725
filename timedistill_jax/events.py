"""TensorBoard event files of a run, under ``<workdir>/tensorboard``.

Written with tensorboardX, which needs no TensorFlow (the ``tensorboard`` extra:
``pip install -e .[tensorboard]``; ``make`` installs it). Without it, or with
``config.train.tensorboard=False``, nothing is written; ``metrics.jsonl`` is written either way.

Per epoch: the training loss and each of its parts, the validation metrics, the learning rate and
the training steps per second; at the end the test metrics, and the config as hparams (flattened,
``optim.lr`` and so on) with the best validation and the test MSE as their metrics. An
ensemble's members each get a folder of their own (``tensorboard/member_<m>``), so TensorBoard
overlays them as runs.

  tensorboard --logdir runs/        # every run below it, members as runs of their own
"""

import json
from pathlib import Path


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out |= _flat(value, f"{prefix}{key}.")
    elif isinstance(value, (bool, int, float, str)):
      out[prefix + key] = value
  return out


def _summary_writer():
  """tensorboardX's ``SummaryWriter``, imported without torch.

  tensorboardX imports torch whenever it is installed, only to accept torch tensors (which a run
  never logs): about 2 s at the start of every run on a machine with the torch extra. Unless
  torch is already loaded, ``import torch`` is made to fail while tensorboardX loads."""
  import sys

  if "torch" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None  # a None entry makes `import torch` raise ImportError
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class EventLog:
  """One SummaryWriter a member (one for a single run); a no-op when disabled."""

  def __init__(self, workdir: Path, config, members: int | None, enabled: bool = True):
    self.writers = []
    if not enabled:
      return
    try:
      SummaryWriter = _summary_writer()
    except ImportError:  # the optional extra
      return
    root = Path(workdir) / "tensorboard"
    names = [root] if members is None else [root / f"member_{m}" for m in range(members)]
    # Event files are named by the second they open in: the suffix keeps add_hparams' own file
    # (same folder, maybe the same second) from replacing the scalars' file.
    self.writers = [SummaryWriter(str(name), filename_suffix=".scalars") for name in names]
    self.writers[0].add_text("config", "```\n" + json.dumps(config.to_dict(), indent=1,
                                                            default=str) + "\n```")

  def epoch(self, epoch: int, lrs: list, train: list, val: list, steps_per_second: float):
    """One epoch's scalars; ``train`` / ``val`` hold a dict a member (None once it stopped)."""
    step = epoch + 1
    for writer, lr, t, v in zip(self.writers, lrs, train, val):
      writer.add_scalar("lr", lr, step)
      writer.add_scalar("steps_per_second", steps_per_second, step)
      for name, value in (t or {}).items():
        writer.add_scalar(f"train/{name}", value, step)
      for name, value in (v or {}).items():
        writer.add_scalar(f"val/{name}", value, step)
      writer.flush()

  def close(self, configs: list, best_vals: list, tests: list) -> None:
    """The test metrics and each member's config as hparams, then the files closed."""
    for writer, config, best, test in zip(self.writers, configs, best_vals, tests):
      for name, value in (test or {}).items():
        writer.add_scalar(f"test/{name}", value, 0)
      metrics = {"hparam/best_val_mse": (best or {}).get("mse", float("nan")),
                 "hparam/test_mse": (test or {}).get("mse", float("nan"))}
      writer.add_hparams(_flat(config.to_dict()), metrics, name=".")
      writer.close()
