"""Benchmark data: the TSLib datasets, their splits and scaling, windows and batches.

  splits = load_dataset("etth1", seq_len=720, label_len=48, pred_len=96)
  for batch in iterate_batches(splits.train, 32, shuffle=True, seed=0, epoch=e):
    ...  # batch["x"]: [B, L, C], batch["y"]: [B, S + H, C], batch["mask"]: [B]
"""

from timedistill_jax.data.datasets import ALIASES
from timedistill_jax.data.datasets import DATASETS
from timedistill_jax.data.datasets import dataset_name
from timedistill_jax.data.datasets import DatasetSpec
from timedistill_jax.data.datasets import fit_scaler
from timedistill_jax.data.datasets import load_dataset
from timedistill_jax.data.datasets import SPLIT_MODES
from timedistill_jax.data.datasets import split_borders
from timedistill_jax.data.datasets import Splits
from timedistill_jax.data.datasets import synthetic_frame
from timedistill_jax.data.download import default_data_dir
from timedistill_jax.data.download import download
from timedistill_jax.data.download import resolve_data_dir
from timedistill_jax.data.time_features import num_time_features
from timedistill_jax.data.time_features import time_features
from timedistill_jax.data.windows import epoch_order
from timedistill_jax.data.windows import iterate_batches
from timedistill_jax.data.windows import num_batches
from timedistill_jax.data.windows import WindowSplit

__all__ = [
    "ALIASES", "DATASETS", "DatasetSpec", "SPLIT_MODES", "Splits", "WindowSplit", "dataset_name",
    "default_data_dir", "download", "epoch_order", "fit_scaler", "iterate_batches",
    "load_dataset", "num_batches", "num_time_features", "resolve_data_dir", "split_borders",
    "synthetic_frame", "time_features",
]
