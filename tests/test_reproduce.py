"""The paper's grids (timedistill_jax.configs.sweeps), the grid runner, its report, and the
benchmark."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import benchmark, reproduce, split_fit
from experiments.reporting import report, summary, tables
from timedistill_jax.configs import common, sweeps
from timedistill_jax.errors import ConfigError, DataError
from timedistill_jax.runs import ensemble

ROOT = Path(__file__).resolve().parent.parent


def test_sweeps_cover_the_papers_grids():
  main = sweeps.get_sweep("main")
  assert set(main.datasets) == {"ecl", "etth1", "etth2", "ettm1", "ettm2", "solar", "traffic",
                                "weather"}
  assert main.horizons == (96, 192, 336, 720) and main.student == "dmlp"
  assert set(sweeps.get_sweep("teachers").teachers) == set(common.TEACHERS)
  assert [v.name for v in sweeps.ABLATION_VARIANTS] == [
      "full", "no_period", "no_scale", "no_feature", "no_prediction", "no_sup"]
  assert len(sweeps.SENSITIVITY_VARIANTS) == 16
  with pytest.raises(ConfigError, match="unknown sweep"):
    sweeps.get_sweep("mian")


def test_plan_orders_runs_by_dependency_seeds_outermost():
  jobs = reproduce.plan(sweeps.get_sweep("main"), datasets=["etth1"], horizons=["96", "336"],
                        teachers=["itransformer"], seeds=2)
  assert len(jobs) == 2 * 2 * 3
  assert [j.seed for j in jobs] == [2021] * 6 + [2022] * 6
  first = jobs[:3]
  assert [j.role for j in first] == ["teacher", "mlp", "distilled"]
  assert first[2].needs == (first[0].run,)
  assert first[2].run == "etth1_H96/s2021/dmlp_kd_itransformer_full"
  # alpha / beta default to the reference's tuned ETTh1 values for the iTransformer teacher.
  assert (first[2].config.distill.alpha, first[2].config.distill.beta) == (2.0, 2.0)
  ablation = reproduce.plan(sweeps.get_sweep("ablation"), datasets=["etth1"], horizons=["96"])
  no_sup = next(j for j in ablation if j.variant == "no_sup")
  assert no_sup.config.distill.sup_weight == 0.0
  # --variants picks distillation variants; the teacher and the MLP they need stay in the plan.
  some = reproduce.plan(sweeps.get_sweep("sensitivity"), datasets=["etth1"], horizons=["720"],
                        variants=["a1_b0.5", "a0.1_b2"])
  assert [(j.role, j.variant) for j in some] == [
      ("teacher", ""), ("mlp", ""), ("distilled", "a0.1_b2"), ("distilled", "a1_b0.5")]
  assert (some[3].config.distill.alpha, some[3].config.distill.beta) == (1.0, 0.5)
  # --seed runs one later seed alone (its own machine, or a checkout without the earlier runs).
  only = reproduce.plan(sweeps.get_sweep("main"), datasets=["etth1"], horizons=["96"],
                        teachers=["itransformer"], only_seed=2022)
  assert [j.seed for j in only] == [2022] * 3


def test_a_variant_that_trains_its_own_teacher_distils_from_that_teacher():
  sweep = sweeps.get_sweep("early_teacher")
  jobs = reproduce.plan(sweep, datasets=["etth1"], horizons=["720"], only_seed=2021)
  assert [(j.run, j.variant) for j in jobs] == [
      ("etth1_H720/s2021/teacher_moderntcn", ""), ("etth1_H720/s2021/teacher_moderntcn_e1", "e1"),
      ("etth1_H720/s2021/dmlp", ""), ("etth1_H720/s2021/dmlp_kd_moderntcn_full", "full"),
      ("etth1_H720/s2021/dmlp_kd_moderntcn_e1", "e1")]
  assert jobs[0].config.train.epochs == 10 and jobs[1].config.train.epochs == 1
  assert jobs[3].needs == (jobs[0].run,) and jobs[4].needs == (jobs[1].run,)
  # The distillation itself is the tuned one; only its teacher differs.
  assert jobs[4].config.distill == jobs[3].config.distill
  # Asked for alone, the variant does not train the shared teacher it does not use.
  only = reproduce.plan(sweep, datasets=["etth1"], horizons=["720"], only_seed=2021,
                        variants=["e1"])
  assert [j.run.split("/")[-1] for j in only] == ["teacher_moderntcn_e1", "dmlp",
                                                  "dmlp_kd_moderntcn_e1"]


def test_a_variant_changes_the_students_schedule_and_its_own_alpha_beta_per_dataset():
  sweep = sweeps.get_sweep("schedule")
  jobs = reproduce.plan(sweep, datasets=["etth1", "etth2"], horizons=["96"], only_seed=2021)
  kd = {(j.dataset, j.variant): j.config for j in jobs if j.role == "distilled"}
  pairs = {k: (c.optim.schedule, c.distill.alpha, c.distill.beta) for k, c in kd.items()}
  assert pairs == {("etth1", "full"): ("type1", 2.0, 2.0), ("etth1", "type4"): ("type4", 2.0, 2.0),
                   ("etth1", "release"): ("type4", 1.0, 2.0),
                   ("etth2", "full"): ("type1", 1.0, 0.5), ("etth2", "type4"): ("type4", 1.0, 0.5),
                   ("etth2", "release"): ("type4", 2.0, 0.1)}
  # The teachers and the MLP keep the reference's schedule; one teacher serves every variant.
  assert {j.config.optim.schedule for j in jobs if j.role != "distilled"} == {"type1"}
  assert sum(j.role == "teacher" for j in jobs) == 2


@pytest.mark.parametrize("kw,match", [
    (dict(datasets=["etth3"]), "dataset etth3 not in this sweep"),
    (dict(horizons=["100"]), "horizon 100 not in this sweep"),
    (dict(variants=["no_feature"]), "variant no_feature not in this sweep; choose from full"),
    (dict(teachers=["itransfomer"]), "teacher itransfomer not a known teacher; choose from "),
    (dict(seeds=9), "--seeds must be between 1 and 5"),
    (dict(only_seed=2030), "--seed must be one of 2021"),
    (dict(seeds=2, only_seed=2022), "not both"),
])
def test_plan_refuses_what_is_not_in_the_sweep(kw, match):
  with pytest.raises(ConfigError, match=match):
    reproduce.plan(sweeps.get_sweep("main"), **kw)


def test_plan_takes_a_teacher_outside_the_sweeps_default():
  # The alpha x beta grid runs the paper's ModernTCN teacher unless told otherwise.
  sweep = sweeps.get_sweep("sensitivity")
  assert sweep.teachers == ("moderntcn",)
  jobs = reproduce.plan(sweep, datasets=["etth2"], horizons=["96"], only_seed=2024,
                        teachers=["itransformer"], variants=["a0.1_b2"])
  assert [j.run for j in jobs] == [
      "etth2_H96/s2024/teacher_itransformer", "etth2_H96/s2024/dmlp",
      "etth2_H96/s2024/dmlp_kd_itransformer_a0.1_b2"]
  assert (jobs[2].config.distill.alpha, jobs[2].config.distill.beta) == (0.1, 2.0)
  assert jobs[2].config.teacher.name == "itransformer"


def _row(run, role, seed, mse, h=96, model="dmlp", teacher="", variant=""):
  return dict(run=run, dataset="etth1", horizon=h, role=role, model=model, teacher=teacher,
              variant=variant, seed=seed, alpha="", beta="", test_mse=mse, test_mae=mse / 2,
              params=10, regressor_params=0, epochs=3, best_epoch=1, ms_per_train_step=1.0,
              inference_ms=0.5, wall_s=2.0)


def test_main_table_means_improvements_and_horizon_average(tmp_path):
  rows = []
  for h, base in ((96, 0.4), (192, 0.5)):
    for seed, eps in ((2021, 0.0), (2022, 0.02)):
      rows += [_row(f"t{h}{seed}", "teacher", seed, base + eps, h, "itransformer", "itransformer"),
               _row(f"m{h}{seed}", "mlp", seed, base + 0.1 + eps, h),
               _row(f"d{h}{seed}", "distilled", seed, base - 0.05 + eps, h, "dmlp",
                    "itransformer", "full")]
  table = tables.main_table(rows, "itransformer", sweeps.PAPER_AVERAGES)
  lines = table.splitlines()
  # H=96: MLP 0.51 +- 0.01, distilled 0.36 +- 0.01: (0.51 - 0.36) / 0.51 = 29.4 %.
  h96 = next(line for line in lines if "| 96 |" in line)
  assert "0.510 ± 0.010" in h96 and "0.360 ± 0.010" in h96 and "+29.4%" in h96
  avg = next(line for line in lines if "avg" in line and "paper" not in line)
  assert "0.410 ± 0.010" in avg  # distilled: mean over H per seed, then over seeds
  assert "| paper avg |" in lines[-1] and "0.429" in lines[-1] and "0.468" in lines[-1]
  path = tmp_path / "summary.csv"
  summary.write_summary(path, rows)
  back = summary.read_summary(path)
  assert len(back) == len(rows) and math.isclose(
      sum(r["test_mse"] for r in back), sum(r["test_mse"] for r in rows))
  merged = summary.merge_rows(back, [_row("t962021", "teacher", 2021, 9.0)])
  assert len(merged) == len(rows) and any(r["test_mse"] == 9.0 for r in merged)


def test_tables_compare_a_teacher_with_the_mlp_of_its_own_seeds():
  # The MLP ran 3 seeds, ModernTCN only seed 2021: its row must use the seed-2021 MLP alone.
  rows = [_row(f"m{s}", "mlp", s, mse) for s, mse in ((2021, 0.5), (2022, 0.7), (2023, 0.9))]
  rows += [_row("t2021", "teacher", 2021, 0.45, model="moderntcn"),
           _row("d2021", "distilled", 2021, 0.4, teacher="moderntcn", variant="full")]
  h96 = next(line for line in tables.main_table(rows, "moderntcn", {}).splitlines()
             if "| 96 |" in line)
  assert "| 0.500 | 0.250 |" in h96 and "+20.0%" in h96 and "+11.1%" in h96
  table = tables.teachers_table(rows, ["moderntcn"])
  assert "| 0.700 ± 0.163 | 0.450 → 0.400 (+20.0%) |" in table
  ablated = rows + [_row("n2021", "distilled", 2021, 0.38, teacher="moderntcn",
                          variant="no_feature")]
  full_and_no_feature = [v for v in sweeps.ABLATION_VARIANTS if v.name in ("full", "no_feature")]
  ablation = tables.variants_table(ablated, "moderntcn", full_and_no_feature)
  assert "| etth1 | H=96; 1 seed | 0.500 | 0.400 | 0.380 |" in ablation
  # Variants that did not run get no column.
  assert tables.variants_table(ablated, "moderntcn", sweeps.ABLATION_VARIANTS) == ablation
  # With two horizons, the ± is over seeds of each seed's mean over H, not over all runs.
  rows += [_row(f"m{s}b", "mlp", s, mse, h=192) for s, mse in ((2021, 0.7), (2022, 0.9),
                                                               (2023, 1.1))]
  assert "| etth1 | 0.800 ± 0.163 |" in tables.teachers_table(rows, ["moderntcn"])


def test_teacher_variety_averages_only_the_seeds_that_ran_every_horizon():
  # Seed 2021 ran H=96 and H=192, seed 2022 only the easier H=96: mixing them would pull the
  # average towards H=96 and make a std over seeds out of the gap between two horizons.
  rows = []
  for h, s, base in ((96, 2021, 0.2), (192, 2021, 0.4), (96, 2022, 0.1)):
    rows += [_row(f"m{h}{s}", "mlp", s, base + 0.1, h=h),
             _row(f"t{h}{s}", "teacher", s, base + 0.2, h=h, model="moderntcn"),
             _row(f"d{h}{s}", "distilled", s, base, h=h, teacher="moderntcn", variant="full")]
  table = tables.teachers_table(rows, ["moderntcn"])
  assert "| etth1 | 0.400 | 0.500 → 0.300 (+25.0%) |" in table
  # So does the efficiency table: two runs of seed 2021, MSE 0.4 and 0.6.
  assert "| etth1 | moderntcn | teacher | 2 | 10 | 0.50 | 1.0 | 0.500 |" in (
      tables.efficiency_table(rows))


def test_a_model_no_seed_of_which_ran_every_horizon_gets_no_average(recwarn):
  # Mid-sweep: seed 2021 has run H=96 only, seed 2022 H=192 only. No seed has an average over
  # the horizons yet, so the tables show none (and never ask numpy for the mean of nothing).
  rows = []
  for h, s in ((96, 2021), (192, 2022)):
    rows += [_row(f"m{h}", "mlp", s, 0.5, h=h),
             _row(f"t{h}", "teacher", s, 0.6, h=h, model="moderntcn"),
             _row(f"d{h}", "distilled", s, 0.4, h=h, teacher="moderntcn", variant="full")]
  assert tables.groups(rows) == {}
  # Each table keeps its header alone.
  assert tables.efficiency_table(rows).count("\n") == 1
  assert tables.teachers_table(rows, ["moderntcn"]).count("\n") == 1
  assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_variants_table_compares_variants_at_the_points_all_of_them_ran():
  # "full" ran at two seeds (the main grid), the ablation at seed 2022 alone: every column,
  # the MLP's too, must use seed 2022 only.
  rows = [_row(f"m{s}", "mlp", s, mse) for s, mse in ((2021, 0.5), (2022, 0.7))]
  rows += [_row(f"d{s}", "distilled", s, mse, teacher="moderntcn", variant="full")
           for s, mse in ((2021, 0.3), (2022, 0.45))]
  rows.append(_row("nf", "distilled", 2022, 0.42, teacher="moderntcn", variant="no_feature"))
  table = tables.variants_table(rows, "moderntcn", sweeps.ABLATION_VARIANTS)
  assert "| dataset | runs | MLP | full | no_feature |" in table
  assert "| etth1 | H=96; 1 seed | 0.700 | 0.450 | 0.420 |" in table
  # A dataset where only the main grid's "full" ran gets no row.
  rows.append(dict(_row("e", "distilled", 2021, 0.3, teacher="moderntcn", variant="full"),
                   dataset="etth2"))
  assert tables.variants_table(rows, "moderntcn", sweeps.ABLATION_VARIANTS) == table
  # H=192 ran both variants at both seeds; seed 2021 never ran no_feature at H=96, so its
  # H=192 runs are left out: they would pull seed 2021's average towards H=192.
  for s, full, nf, mlp in ((2021, 0.6, 0.5, 0.8), (2022, 0.65, 0.62, 0.9)):
    rows += [_row(f"d192{s}", "distilled", s, full, h=192, teacher="moderntcn", variant="full"),
             _row(f"nf192{s}", "distilled", s, nf, h=192, teacher="moderntcn",
                  variant="no_feature"),
             _row(f"m192{s}", "mlp", s, mlp, h=192)]
  assert "| etth1 | H=96, 192; 1 seed | 0.800 | 0.550 | 0.520 |" in tables.variants_table(
      rows, "moderntcn", sweeps.ABLATION_VARIANTS)


def test_schedule_variants_get_their_own_table_and_stay_out_of_the_main_one(tmp_path):
  rows = [_row("m", "mlp", 2021, 0.5),
          _row("d", "distilled", 2021, 0.45, teacher="itransformer", variant="full"),
          _row("d4", "distilled", 2021, 0.41, teacher="itransformer", variant="type4"),
          _row("dr", "distilled", 2021, 0.43, teacher="itransformer", variant="release")]
  text = report.write_results_md(rows, tmp_path / "RESULTS.md", sweeps_module=sweeps).read_text()
  table = text.split("## Learning-rate schedule, itransformer teacher")[1].split("##")[0]
  assert "| dataset | runs | MLP | full | type4 | release |" in table
  assert "| etth1 | H=96; 1 seed | 0.500 | 0.450 | 0.410 | 0.430 |" in table
  main = text.split("## Main table, itransformer teacher")[1].split("##")[0]
  assert "0.450" in main and "0.410" not in main and "0.430" not in main


def test_validation_pick_table_picks_by_validation_and_shows_the_best_on_test(tmp_path):
  grid = sweeps.SENSITIVITY_VARIANTS
  names = [v.name for v in grid]
  kd = lambda run, seed, mse, h, variant, val, alpha, beta: dict(
      _row(run, "distilled", seed, mse, h, teacher="itransformer", variant=variant),
      val_mse=val, alpha=alpha, beta=beta)
  rows = []
  for h in (96, 192):
    # Validation prefers the first pair of the grid, the test the last; a2_b2 did not run as
    # a grid point but as the tuned run ("full"), which stands in for it.
    rows += [kd(f"{v.name}{h}", 2021, 0.5 - 0.01 * i, h, v.name, 1.0 + 0.01 * i,
                *v.overrides().values()) for i, v in enumerate(grid) if v.name != "a2_b2"]
    rows.append(kd(f"full{h}", 2021, 0.35, h, "full", 1.15, 2.0, 2.0))
  # A tuned run without a validation MSE (an old row) still fills the tuned column.
  rows += [kd(f"full{h}", 2021, 0.4, h, "full", None, 1.0, 0.5) for h in (336, 720)]
  rows += [kd(f"{v.name}{h}", 2021, 0.45, h, v.name, 1.0, *v.overrides().values())
           for v in grid for h in (336, 720)]
  # Seed 2022 ran one pair of the grid only: no point of the table.
  rows.append(kd("x", 2022, 0.1, 96, "a1_b1", 0.1, 1.0, 1.0))
  table = tables.validation_pick_table(rows, "itransformer", names)
  assert "| etth1 | 96 | 1 | 0.350 | a0.1_b0.1 | 0.500 | a2_b2 | 0.350 |" in table
  assert "| etth1 | 336 | 1 | 0.400 | " in table
  assert "| etth1 | average of 4 H | | 0.375 | | 0.475 | | 0.400 |" in table
  assert "| etth1 | one pair for all 4 H | 1 | 0.375 | a0.1_b0.1 | 0.475 | a2_b2 | 0.400 |" in table
  # Rows from before the val_mse column (blank, read back as None) are left out.
  path = tmp_path / "summary.csv"
  summary.write_summary(path, rows + [_row("m", "mlp", 2021, 0.6)])
  back = summary.read_summary(path)
  assert next(r for r in back if r["run"] == "m")["val_mse"] is None
  assert tables.validation_pick_table(back, "itransformer", names) == table
  md = report.write_results_md(back, tmp_path / "RESULTS.md", sweeps_module=sweeps).read_text()
  assert "## Alpha / beta picked by validation MSE, itransformer teacher" in md


def test_a_teacher_variant_gets_its_own_table_and_stays_out_of_the_others(tmp_path):
  rows = []
  for h, seed, base in ((96, 2021, 0.4), (720, 2021, 0.6), (720, 2022, 0.62)):
    rows += [_row(f"t{h}{seed}", "teacher", seed, base, h, "moderntcn", "moderntcn"),
             _row(f"m{h}{seed}", "mlp", seed, base + 0.1, h),
             _row(f"d{h}{seed}", "distilled", seed, base + 0.01, h, teacher="moderntcn",
                  variant="full")]
  # The variant's teacher ran at H=720 only: no better on test, a better student.
  for seed in (2021, 2022):
    rows += [_row(f"te{seed}", "teacher", seed, 0.9, 720, "moderntcn", "moderntcn", "e1"),
             _row(f"de{seed}", "distilled", seed, 0.55 + (seed - 2021) / 100, 720,
                  teacher="moderntcn", variant="e1")]
  table = tables.teacher_variant_table(rows, "moderntcn", "e1")
  assert "| dataset | H | seeds | MLP | teacher | teacher (e1) | MLP + TimeDistill |" in table
  assert "| etth1 | 720 | 2 | 0.710 ± 0.010 | 0.610 ± 0.010 | 0.900 ± 0.000 | " \
         "0.620 ± 0.010 | 0.555 ± 0.005 |" in table
  assert "| 96 |" not in table  # the variant did not run there
  text = report.write_results_md(rows, tmp_path / "RESULTS.md", sweeps_module=sweeps).read_text()
  assert "## Teacher variant e1: moderntcn with train.epochs=1" in text and table in text
  main = text.split("## Main table, moderntcn teacher")[1].split("##")[0]
  # The reference's teacher alone in the main and efficiency tables (0.9 would show there).
  assert "| etth1 | 720 | 2 | 0.610 ± 0.010 |" in main and "0.900" not in main
  # Seed 2021's two runs; seed 2022 ran H=720 alone, and the e1 runs would make it three.
  assert "| etth1 | moderntcn | teacher | 2 | 10 | 0.50 | 1.0 | 0.500 |" in text


def test_a_second_student_gets_its_own_table_and_stays_out_of_the_main_one(tmp_path):
  rows = []
  for h, seed, base in ((96, 2021, 0.4), (96, 2022, 0.42), (192, 2021, 0.5), (192, 2022, 0.5)):
    rows += [_row(f"t{h}{seed}", "teacher", seed, base, h, "moderntcn"),
             _row(f"m{h}{seed}", "mlp", seed, base + 0.1, h),
             _row(f"d{h}{seed}", "distilled", seed, base - 0.05, h, teacher="moderntcn",
                  variant="full")]
  # The plain MLP student ran seed 2021 only, much better than the DMLP.
  rows += [_row(f"pm{h}", "mlp", 2021, base, h, model="mlp") for h, base in ((96, 0.3),
                                                                             (192, 0.4))]
  rows += [_row(f"pd{h}", "distilled", 2021, base, h, model="mlp", teacher="moderntcn",
                variant="full") for h, base in ((96, 0.2), (192, 0.3))]
  assert summary.students(rows) == ["dmlp", "mlp"]
  table = tables.student_table(rows, "moderntcn", ["dmlp", "mlp"])
  assert "| dataset | H | seeds | teacher | dmlp | dmlp + TimeDistill | mlp | mlp + TimeDistill |" \
      in table
  # Only the points where both students ran: seed 2021.
  assert "| etth1 | 96 | 1 | 0.400 | 0.500 | 0.350 | 0.300 | 0.200 |" in table
  assert "| etth1 | **avg** (2 H) | 1 | 0.450 | 0.550 | 0.400 | 0.350 | 0.250 |" in table
  text = report.write_results_md(rows, tmp_path / "RESULTS.md", sweeps_module=sweeps).read_text()
  main = text.split("## Main table, moderntcn teacher")[1].split("##")[0]
  # The main table is the DMLP's alone (both seeds): the plain MLP's runs are not mixed in.
  assert "| etth1 | 96 | 2 | 0.410 ± 0.010 | 0.205 ± 0.005 | 0.510 ± 0.010 |" in main
  assert "## Student, moderntcn teacher" in text and table in text
  assert "| etth1 | mlp ← moderntcn | distilled | 2 |" in text  # efficiency keeps every run
  # Without the DMLP, the one student that ran is the tables' student.
  only_mlp = [r for r in rows if r["role"] == "teacher" or r["model"] == "mlp"]
  text = report.write_results_md(only_mlp, tmp_path / "R2.md", sweeps_module=sweeps).read_text()
  assert "| etth1 | 96 | 1 | 0.400 |" in text and "## Student" not in text


def test_grid_runs_skips_finished_runs_and_writes_the_report(tmp_path, monkeypatch, capsys):
  sweep = sweeps.Sweep("tiny", "test", datasets=("synthetic",), horizons=(96,),
                       teachers=("itransformer",), student="mlp")
  jobs = reproduce.plan(sweep, smoke=True)
  root, results = tmp_path / "runs", tmp_path / "results"
  writes = []
  failures = reproduce.run_jobs(jobs, root, lambda plots: writes.append(plots))
  assert failures == [] and len(writes) == 3
  assert all((root / j.run / "results.json").exists() for j in jobs)
  assert reproduce.run_jobs(jobs, root, lambda plots: writes.append(plots)) == []
  assert len(writes) == 3  # nothing ran again
  rows = reproduce.finished_rows(jobs, root)
  assert [r["role"] for r in rows] == ["teacher", "mlp", "distilled"]
  assert rows[2]["teacher"] == "itransformer" and rows[2]["regressor_params"] > 0
  assert all(r["val_mse"] > 0 for r in rows)  # the best epoch's, for choices without the test
  # split_fit re-scores a run's best checkpoint on each split: its test column is the run's.
  for job, row in zip(jobs, rows):
    fit = split_fit.split_fit(root / job.run)
    assert math.isclose(fit["test_mse"], row["test_mse"], rel_tol=1e-5)
    assert all(np.isfinite(fit[f"{s}_mae"]) for s in split_fit.SPLITS)
  assert "| train MSE / MAE |" in split_fit.table([fit])
  summary.write_summary(results / "summary.csv", rows)
  text = report.write_results_md(rows, results / "RESULTS.md", sweeps_module=sweeps).read_text()
  assert "## Main table, itransformer teacher" in text and "| synthetic | 96 | 1 |" in text
  from experiments.reporting import plots
  written = plots.write_plots(rows, root, results / "plots")
  assert {p.name for p in written} == {"forecast_synthetic_H96.png", "curves_synthetic_H96.png",
                                       "efficiency_synthetic.png"}
  assert all(p.stat().st_size > 1000 for p in written)
  kept = {p.name: p.read_bytes() for p in written}
  # Without the dataset's file only the forecast (which reads the test split) is left as it
  # was, with the reason; the report goes on.
  def missing(config):
    raise DataError(f"dataset {config.data.name!r}: file not found")
  monkeypatch.setattr(plots.runs, "load_splits", missing)
  rewritten = plots.write_plots(rows, root, results / "plots")
  assert {p.name for p in rewritten} == {"curves_synthetic_H96.png", "efficiency_synthetic.png"}
  assert "left forecast for synthetic H=96 as it was: dataset 'synthetic'" in (
      capsys.readouterr().err)
  assert (results / "plots" / "forecast_synthetic_H96.png").read_bytes() == (
      kept["forecast_synthetic_H96.png"])
  monkeypatch.undo()
  # A second seed: copies of the runs, under other folders.
  second = []
  for r in rows:
    shutil.copytree(root / r["run"], root / (r["run"] + "_copy"))
    second.append(dict(r, seed=r["seed"] + 1, run=r["run"] + "_copy"))
  # With a run folder of the first seed gone, the forecast and curves written from the whole
  # set are kept.
  shutil.rmtree(root / jobs[2].run)
  rewritten = plots.write_plots(rows + second, root, results / "plots")
  assert {p.name for p in rewritten} == {"efficiency_synthetic.png"}
  assert all((results / "plots" / n).read_bytes() == b for n, b in kept.items()
             if n.startswith(("forecast", "curves")))
  assert "left forecast/curves for synthetic H=96 as they were" in capsys.readouterr().err
  # Never drawn yet, they are drawn from the next seed whose runs are all there.
  for name in ("forecast_synthetic_H96.png", "curves_synthetic_H96.png"):
    (results / "plots" / name).unlink()
  rewritten = plots.write_plots(rows + second, root, results / "plots")
  assert {p.name for p in rewritten} == set(kept)
  assert f"synthetic H=96 drawn from seed {second[0]['seed']}" in capsys.readouterr().err


def test_benchmark_measures_a_model_and_reports_ratios():
  rows = [benchmark.measure(name, "etth1", 7, repeats=2, budget_s=1.0, train=(name == "mlp"))
          for name in ("dmlp", "mlp")]
  mlp = rows[1]
  assert mlp["params"] == 418_428 and mlp["inference_ms"] > 0 and mlp["train_step_ms"] > 0
  assert mlp["infer_peak_mb"] > 0 and np.isfinite(mlp["train_peak_mb"])
  teacher = dict(rows[1], model="moderntcn", role="teacher", params=4 * 836_842,
                 inference_ms=4 * rows[0]["inference_ms"])
  lines = benchmark.ratios_table(rows + [teacher])
  assert any(line.startswith("| moderntcn | 4.0x | 5.6x | 4.0x | 120x |") for line in lines)


def test_benchmark_tables_of_other_settings_go_to_files_of_their_own(tmp_path):
  stem = lambda **kw: benchmark.table_stem(tmp_path, **{**dict(
      dataset="ecl", seq_len=720, pred_len=96, batch=32, platform="cpu"), **kw}).name
  assert stem() == "benchmark_ecl_H96_cpu"
  assert stem(batch=16) == "benchmark_ecl_B16_H96_cpu"
  assert stem(seq_len=96, batch=8) == "benchmark_ecl_L96_B8_H96_cpu"
  assert len({stem(), stem(batch=16), stem(seq_len=96), stem(platform="gpu")}) == 4


def test_benchmark_refuses_a_program_over_the_hosts_memory_fraction():
  host_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
  with pytest.raises(MemoryError, match="over 35% of this host's.*--host_fraction"):
    benchmark.check_fits(0.38 * host_mb, "inference")
  benchmark.check_fits(0.38 * host_mb, "inference", host_fraction=0.4)  # the user's choice
  done = subprocess.run([sys.executable, "-m", "experiments.benchmark", "--host_fraction=1.5"],
                        cwd=ROOT, capture_output=True, text=True)
  assert done.returncode == 2 and "--host_fraction=1.5 is not a share" in done.stderr
  assert "Traceback" not in done.stderr


def test_benchmark_table_merges_runs_of_other_models(tmp_path):
  path = tmp_path / "b.csv"
  old = [dict(model="itransformer", role="teacher", params=5, inference_ms=2.5),
         dict(model="dmlp", role="student", params=1, inference_ms=1.0)]
  with open(path, "w", newline="") as f:
    import csv
    writer = csv.DictWriter(f, fieldnames=["model", "role", "params", "inference_ms"])
    writer.writeheader()
    writer.writerows(old)
  back = benchmark.read_rows(path)
  assert back == old  # numbers come back as numbers
  new = [dict(model="dmlp", role="student", params=1, inference_ms=0.5),
         dict(model="mlp", role="student", params=1, inference_ms=0.4)]
  merged = benchmark.merge_rows(back, new, ["dmlp", "mlp"])
  assert [r["model"] for r in merged] == ["dmlp", "mlp", "itransformer"]
  assert merged[0]["inference_ms"] == 0.5


def test_ensemble_plan_groups_seeds_and_each_seeds_variants():
  sweep = sweeps.get_sweep("sensitivity")
  jobs = reproduce.plan(sweep, datasets=["etth1"], horizons=["96"], seeds=2,
                        teachers=["itransformer", "moderntcn"], ensemble=True)
  runs = [j.run for j in jobs]
  assert runs[0] == "etth1_H96/ensemble/teacher_itransformer"  # one ensemble of both seeds
  assert runs[1:3] == ["etth1_H96/s2021/teacher_moderntcn", "etth1_H96/s2022/teacher_moderntcn"]
  assert runs[3] == "etth1_H96/ensemble/dmlp"
  kd = [j for j in jobs if j.role == "distilled"]
  assert [j.run for j in kd] == [f"etth1_H96/s{s}/ensemble/dmlp_kd_{t}"
                                 for t in ("itransformer", "moderntcn") for s in (2021, 2022)]
  grid = kd[1]  # seed 2022, iTransformer: the 16 pairs, from that seed's teacher member
  assert grid.needs == ("etth1_H96/ensemble/teacher_itransformer/members/1",)
  assert len(grid.members) == 16 and grid.members[1] == (2022, "a0.1_b0.5")
  members = ensemble.members(grid.config)
  assert [(m["alpha"], m["beta"]) for m in members][:2] == [(0.1, 0.1), (0.1, 0.5)]


def test_an_ensemble_grid_runs_and_reports_one_row_a_member(tmp_path):
  variants = (sweeps.Variant("no_period", (("period_weight", 0.0),)), sweeps.FULL)
  sweep = sweeps.Sweep("tiny", "test", datasets=("synthetic",), horizons=(96,),
                       teachers=("itransformer",), student="mlp", seeds=2, variants=variants)
  jobs = reproduce.plan(sweep, smoke=True, ensemble=True)
  root = tmp_path / "runs"
  assert reproduce.run_jobs(jobs, root, lambda plots: None) == []
  rows = reproduce.finished_rows(jobs, root)
  assert [(r["role"], r["seed"], r["variant"]) for r in rows] == [
      ("teacher", 2021, ""), ("teacher", 2022, ""), ("mlp", 2021, ""), ("mlp", 2022, ""),
      ("distilled", 2021, "no_period"), ("distilled", 2021, "full"),
      ("distilled", 2022, "no_period"), ("distilled", 2022, "full")]
  member = root / rows[6]["run"]
  assert json.loads((member / "results.json").read_text())["test"]["mse"] == rows[6]["test_mse"]
  assert json.loads((member / "config.json").read_text())["distill"]["period_weight"] == 0.0
