"""Experiments around timedistill_jax: the paper's grids, benchmarks, reference comparisons."""
