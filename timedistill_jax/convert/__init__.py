"""Reference PyTorch checkpoints (Time-Series-Library, TimeDistill) <-> Flax variables.

::

    variables = convert.from_torch(model, state_dict, template)   # any registered model
    state_dict = convert.to_torch(model, variables)               # the way back
    state_dict = convert.read_pth("checkpoint.pth")               # needs the torch extra

``core.py`` holds the one mechanism, ``tables.py`` one mapping table per model (the students
DMLP and MLP and every teacher). ``pth.py`` reads ``.pth`` files and builds a ready teacher from
one (``configs/distill.py``: ``--config.teacher.torch_checkpoint``).
"""

from timedistill_jax.convert import tables  # noqa: F401  (fills CONVERTERS)
from timedistill_jax.convert.core import (  # noqa: F401
    CONVERTERS, KINDS, LAYOUTS, from_torch, register_converter, to_torch)
from timedistill_jax.convert.pth import load_torch_teacher, read_pth  # noqa: F401


def fedformer_mode_indices(reference_model) -> tuple:
  """(encoder, decoder self, cross q, cross kv) mode indices of a reference FEDformer.

  FEDformer's random Fourier modes are attributes, not state: pass the result as
  ``mode_indices`` when building the Flax FEDformer so that converted weights keep their modes.
  Duck-typed: reads the ``index`` / ``index_q`` / ``index_kv`` attributes, no torch import.
  """
  enc = reference_model.encoder.attn_layers[0].attention.inner_correlation
  dec = reference_model.decoder.layers[0]
  cross = dec.cross_attention.inner_correlation
  as_tuple = lambda idx: tuple(int(i) for i in idx)
  return (as_tuple(enc.index), as_tuple(dec.self_attention.inner_correlation.index),
          as_tuple(cross.index_q), as_tuple(cross.index_kv))
