"""Autoformer's auto-correlation against NumPy."""

import math

import numpy as np
import pytest

from timedistill_jax.models.layers import autocorrelation


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
