"""experiments/benchmark_grid.py: the members and the single runs sampled to stand for them
(the benchmark itself runs for an hour; gpu_check.sh --smoke runs it at toy size)."""

from experiments.benchmark_grid import GRID, SEEDS, sample, settings


def test_members_in_the_ensembles_order():
  members = settings()
  assert len(members) == 80 and len(set(members)) == 80
  assert members[:2] == [(2021, 0.1, 0.1), (2021, 0.1, 0.5)]  # seeds, then alpha, then beta
  assert members[16] == (2022, 0.1, 0.1)


def test_a_sample_visits_every_seed_alpha_and_beta():
  for n in (6, 8, 16):
    picked = [settings()[i] for i in sample(n)]
    assert len(set(picked)) == n
    assert {s for s, _, _ in picked} == set(SEEDS)
    assert {a for _, a, _ in picked} == set(GRID) == {b for _, _, b in picked}
  assert sample(0) == []
