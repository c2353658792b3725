r"""Runs one of the paper's grids (timedistill_jax/configs/sweeps.py) and writes its tables and
plots. From the repository root:

  python -m experiments.reproduce --sweep main --datasets etth1,etth2 --seeds 3
  python -m experiments.reproduce --sweep main --datasets ettm1 --horizons 96,336 --seeds 1
  python -m experiments.reproduce --sweep ablation --datasets etth1 --horizons 96
  python -m experiments.reproduce --sweep sensitivity --datasets etth1 --variants a1_b0.5
  python -m experiments.reproduce --sweep early_teacher --datasets etth1 --horizons 720
  python -m experiments.reproduce --report_only          # tables and plots from finished runs
  python -m experiments.reproduce --sweep sensitivity --datasets etth1 --horizons 96 --ensemble

For every (dataset, horizon, seed) it trains each teacher, then the plain MLP student, then the
MLP distilled from each teacher (one run per distillation variant). A run whose folder holds
``results.json`` is skipped; an interrupted run resumes from its last checkpoint, so the command
can be stopped and started again at any time. A run that fails is reported and the rest go on
(runs that need a failed teacher are skipped).

``--ensemble`` trains the seeds of each (dataset, horizon) as one ensemble (the plain MLP, and
the teachers of ``ENSEMBLE_TEACHERS``; the others stay single runs, one a seed), and each seed's
distillation variants (an alpha x beta grid, or the ablation's loss switches) as one ensemble
that distils from that seed's teacher. Each member is a run folder of its own
(``.../ensemble/<run>/members/<m>``) and a row of summary.csv, as a single run is.

Runs go to ``--workdir`` (default ``runs/reproduce/<dataset>_H<h>/s<seed>/...``); the evidence
goes to ``--results`` (default ``results/``), rewritten after every finished run:
  summary.csv     one row a run (all sweeps, merged across invocations)
  RESULTS.md      the paper's table layout with its published averages side by side
  plots/          a forecast window, training curves, the efficiency scatter (PNG)
"""

import dataclasses
import json
import sys
import time
import traceback
from pathlib import Path

from absl import app, flags, logging
from tqdm import tqdm

from experiments.reporting import report, summary
from timedistill_jax import compilation
from timedistill_jax.configs import common
from timedistill_jax.configs import distill as distill_config
from timedistill_jax.configs import student as student_config
from timedistill_jax.configs import sweeps
from timedistill_jax.configs import teacher as teacher_config
from timedistill_jax.data import dataset_name
from timedistill_jax.errors import ConfigError, TimeDistillError
from timedistill_jax.runs import ensemble as ensemble_lib


@dataclasses.dataclass
class Job:
  run: str  # the run folder relative to the root: also the summary row's key
  role: str  # teacher | mlp | distilled
  dataset: str
  horizon: int
  seed: int
  config: object
  teacher: str = ""
  variant: str = ""
  needs: tuple = ()  # runs that must be finished first
  # An ensemble: one (seed, variant) a member, in its members' order (members/<m>/ folders)
  members: tuple = ()


# Teachers trained as one ensemble over the seeds under --ensemble: those whose members fit in
# memory together at L=720 on a 24 GiB machine. The others (ModernTCN's cross-variable
# convolutions, the Transformer teachers of 10-50 M parameters, TimesNet's 2-D inception
# blocks) stay single runs, one a seed.
ENSEMBLE_TEACHERS = ("itransformer", "timemixer")


def _subset(requested, available, what: str, where: str = "in this sweep") -> tuple:
  if requested is None:
    return tuple(available)
  bad = [x for x in requested if x not in [str(a) for a in available]]
  if bad:
    raise ConfigError(f"{what} {', '.join(bad)} not {where}; choose from "
                      f"{', '.join(map(str, available))}.")
  return tuple(a for a in available if str(a) in requested)


def plan(sweep: sweeps.Sweep, *, datasets=None, horizons=None, teachers=None, variants=None,
         seeds=None, only_seed=None, student=None, smoke: bool = False,
         ensemble: bool = False) -> list:
  """The sweep's runs in dependency order: per (seed, dataset, H) teachers, MLP, distilled.

  ``seeds`` takes the first N of ``sweeps.SEEDS``; ``only_seed`` picks one of them instead.
  ``ensemble``: the seeds of each (dataset, H) train as one ensemble (the plain MLP, and the
  teachers of ``ENSEMBLE_TEACHERS``), and each seed's distillation variants as one ensemble
  distilling from that seed's teacher (``ensemble_plan``).
  """
  datasets = _subset(datasets and [dataset_name(d) for d in datasets], sweep.datasets, "dataset")
  horizons = _subset(horizons, sweep.horizons, "horizon")
  # A sweep names the teachers it runs by default; --teachers may pick any known teacher (e.g.
  # the alpha x beta grid with the iTransformer teacher instead of the paper's ModernTCN).
  teachers = (sweep.teachers if teachers is None
              else _subset(teachers, common.TEACHERS, "teacher", "a known teacher"))
  by_name = {v.name: v for v in sweep.variants}
  variants = [by_name[n] for n in _subset(variants, tuple(by_name), "variant")]
  n_seeds = sweep.seeds if seeds is None else seeds
  if not 1 <= n_seeds <= len(sweeps.SEEDS):
    raise ConfigError(f"--seeds must be between 1 and {len(sweeps.SEEDS)}, got {n_seeds}.")
  if only_seed is not None and only_seed not in sweeps.SEEDS:
    raise ConfigError(f"--seed must be one of {', '.join(map(str, sweeps.SEEDS))}, "
                      f"got {only_seed}.")
  if only_seed is not None and seeds is not None:
    raise ConfigError("give --seeds (the first N seeds) or --seed (one seed), not both.")
  seed_list = (only_seed,) if only_seed is not None else sweeps.SEEDS[:n_seeds]
  student = student or sweep.student
  if ensemble:
    return ensemble_plan(datasets, horizons, teachers, variants, seed_list, student, smoke)
  jobs = []
  # Seeds outermost: a grid stopped early has every dataset and horizon at fewer seeds.
  for seed in seed_list:
    for dataset in datasets:
      for h in horizons:
        base = f"{dataset}_H{h}/s{seed}"
        arg = f"dataset={dataset},pred_len={h},seed={seed},smoke={smoke}"
        for t in teachers:
          # The teachers the variants distil from, each once: the shared one, and one for each
          # variant that trains its own.
          runs = {}
          for v in variants:
            runs.setdefault(_teacher_run(t, v), v)
          for run, v in runs.items():
            config = teacher_config.get_config(f"{arg},model={t}")
            config.train.update(dict(v.teacher_train))
            jobs.append(Job(f"{base}/{run}", "teacher", dataset, h, seed, config, teacher=t,
                            variant=v.name if v.teacher_train else ""))
        jobs.append(Job(f"{base}/{student}", "mlp", dataset, h, seed,
                        student_config.get_config(f"{arg},model={student}")))
        for t in teachers:
          for v in variants:
            config = distill_config.get_config(f"{arg},teacher={t},student={student}")
            config.distill.update(v.overrides(dataset))
            config.optim.update(dict(v.optim))
            jobs.append(Job(f"{base}/{student}_kd_{t}_{v.name}", "distilled", dataset, h, seed,
                            config, teacher=t, variant=v.name,
                            needs=(f"{base}/{_teacher_run(t, v)}",)))
  return jobs


def _variant_lists(variants) -> dict | None:
  """``config.ensemble`` lists whose members are exactly ``variants`` (in their order), or None
  when they are not such a grid (a variant with its own teacher or schedule, a partial grid)."""
  if len(variants) < 2 or any(v.teacher_train or v.optim or v.distill_by_dataset
                              for v in variants):
    return None
  names = [v.name for v in variants]
  if all(n in ensemble_lib.VARIANTS for n in names):
    return {"variants": ",".join(names)}
  pairs = [dict(v.distill) for v in variants]
  if any(set(p) != {"alpha", "beta"} for p in pairs):
    return None
  alphas = list(dict.fromkeys(p["alpha"] for p in pairs))
  betas = list(dict.fromkeys(p["beta"] for p in pairs))
  if [(p["alpha"], p["beta"]) for p in pairs] != [(a, b) for a in alphas for b in betas]:
    return None
  return {"alpha": ",".join(map(str, alphas)), "beta": ",".join(map(str, betas))}


def ensemble_plan(datasets, horizons, teachers, variants, seed_list, student, smoke) -> list:
  """``plan`` with ensembles: per (dataset, H) the seeds' teachers (where they fit) and plain
  MLPs as one ensemble each, then per seed and teacher the variants as one ensemble."""
  jobs, seeds = [], ",".join(map(str, seed_list))
  for dataset in datasets:
    for h in horizons:
      root = f"{dataset}_H{h}"
      arg = f"dataset={dataset},pred_len={h},seed={seed_list[0]},smoke={smoke}"
      teacher_dirs = {}
      for t in teachers:
        if any(v.teacher_train for v in variants):
          raise ConfigError("--ensemble runs variants that share their seed's teacher; "
                            "variants that train their own teacher run without --ensemble.")
        config = teacher_config.get_config(f"{arg},model={t}")
        if t in ENSEMBLE_TEACHERS and len(seed_list) > 1:
          config.ensemble.seeds = seeds
          jobs.append(Job(f"{root}/ensemble/teacher_{t}", "teacher", dataset, h, seed_list[0],
                          config, teacher=t, members=tuple((s, "") for s in seed_list)))
          teacher_dirs[t] = [f"{root}/ensemble/teacher_{t}/members/{i}"
                             for i in range(len(seed_list))]
          continue
        teacher_dirs[t] = []
        for seed in seed_list:
          config = teacher_config.get_config(f"{arg.replace(f'seed={seed_list[0]}', f'seed={seed}')},"
                                             f"model={t}")
          jobs.append(Job(f"{root}/s{seed}/teacher_{t}", "teacher", dataset, h, seed, config,
                          teacher=t))
          teacher_dirs[t].append(f"{root}/s{seed}/teacher_{t}")
      config = student_config.get_config(f"{arg},model={student}")
      config.ensemble.seeds = seeds
      jobs.append(Job(f"{root}/ensemble/{student}", "mlp", dataset, h, seed_list[0], config,
                      members=tuple((s, "") for s in seed_list)))
      lists = _variant_lists(variants)
      for t in teachers:
        for i, seed in enumerate(seed_list):
          seed_arg = f"dataset={dataset},pred_len={h},seed={seed},smoke={smoke}"
          config = distill_config.get_config(f"{seed_arg},teacher={t},student={student}")
          if lists is None:  # one run a variant, as without --ensemble
            for v in variants:
              one = distill_config.get_config(f"{seed_arg},teacher={t},student={student}")
              one.distill.update(v.overrides(dataset))
              one.optim.update(dict(v.optim))
              jobs.append(Job(f"{root}/s{seed}/{student}_kd_{t}_{v.name}", "distilled",
                              dataset, h, seed, one, teacher=t, variant=v.name,
                              needs=(teacher_dirs[t][i],)))
            continue
          config.ensemble.update(lists)
          jobs.append(Job(f"{root}/s{seed}/ensemble/{student}_kd_{t}", "distilled", dataset, h,
                          seed, config, teacher=t, needs=(teacher_dirs[t][i],),
                          members=tuple((seed, v.name) for v in variants)))
  return jobs


def _teacher_run(teacher: str, variant: sweeps.Variant) -> str:
  """The folder of the teacher that ``variant`` distils from (relative to the seed's)."""
  return f"teacher_{teacher}_{variant.name}" if variant.teacher_train else f"teacher_{teacher}"


def job_row(job: Job, results: dict) -> dict:
  alpha = beta = None
  if job.role == "distilled":
    alpha, beta = job.config.distill.alpha, job.config.distill.beta
  return summary.result_row(job.run, results, role=job.role, dataset=job.dataset,
                            horizon=job.horizon, seed=job.seed, teacher=job.teacher,
                            variant=job.variant, alpha=alpha, beta=beta)


def member_rows(job: Job, results: dict) -> list:
  """One summary row a member of an ensemble job, from its own ``members/<m>/`` folder."""
  rows = []
  for m, ((seed, variant), entry) in enumerate(zip(job.members, results["members"])):
    if entry["test"] is None:  # a member that failed: no row, as a failed run has none
      continue
    member = ensemble_lib.member_config(job.config, ensemble_lib.members(job.config)[m])
    alpha = beta = None
    if job.role == "distilled":
      alpha, beta = member.distill.alpha, member.distill.beta
    # The ensemble's timings are shared: a member's share of its wall clock is 1 / M of it.
    share = {"wall_seconds": results["wall_seconds"] / len(job.members)}
    rows.append(summary.result_row(
        f"{job.run}/members/{m}", results | entry | share, role=job.role, dataset=job.dataset,
        horizon=job.horizon, seed=seed, teacher=job.teacher, variant=variant, alpha=alpha,
        beta=beta))
  return rows


def run_jobs(jobs, root: Path, write) -> list:
  """Runs what is not finished; returns the failures as ``[(run, message)]``."""
  from timedistill_jax.run import run

  done = lambda j: (root / j.run / "results.json").exists()
  todo = [j for j in jobs if not done(j)]
  print(f"{len(jobs)} runs in the grid: {len(jobs) - len(todo)} finished, {len(todo)} to do")
  failed, failures = set(), []
  bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="run", dynamic_ncols=True)
  for job in todo:
    bar.set_description(job.run)
    if any(n in failed for n in job.needs):
      failed.add(job.run)
      failures.append((job.run, "skipped: its teacher failed"))
      bar.update(1)
      continue
    if job.role == "distilled":
      job.config.teacher.workdir = str(root / job.needs[0])
    job.config.train.progress = False  # the grid's bar is the progress display
    t0 = time.time()
    try:
      results = run(job.config, root / job.run)
    except (TimeDistillError, FloatingPointError) as e:
      failed.add(job.run)
      failures.append((job.run, str(e)))
      tqdm.write(f"FAILED {job.run}: {e}")
    except Exception as e:  # a bug in one run must not cost the rest of a night's grid
      failed.add(job.run)
      failures.append((job.run, f"{type(e).__name__}: {e}"))
      tqdm.write(f"FAILED {job.run}:\n{traceback.format_exc()}")
    else:
      tqdm.write(f"{job.run}: test MSE {results['test']['mse']:.4f} MAE "
                 f"{results['test']['mae']:.4f} ({time.time() - t0:.0f} s)")
      write(plots=False)
    bar.update(1)
  bar.close()
  return failures


def finished_rows(jobs, root: Path) -> list:
  rows = []
  for job in jobs:
    path = root / job.run / "results.json"
    if path.exists():
      results = json.loads(path.read_text())
      rows += member_rows(job, results) if job.members else [job_row(job, results)]
  return rows


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)

  root, results_dir = Path(_WORKDIR.value), Path(_RESULTS.value)
  if _CACHE.value:
    compilation.enable(_CACHE.value)
  try:
    sweep = sweeps.get_sweep(_SWEEP.value)
    jobs = plan(sweep, datasets=_DATASETS.value, horizons=_HORIZONS.value,
                teachers=_TEACHERS.value, variants=_VARIANTS.value, seeds=_SEEDS.value,
                only_seed=_SEED.value, student=_STUDENT.value, smoke=_SMOKE.value,
                ensemble=_ENSEMBLE.value)
  except TimeDistillError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

  def write(plots: bool) -> None:
    rows = summary.merge_rows(summary.read_summary(results_dir / "summary.csv"),
                              finished_rows(jobs, root))
    summary.write_summary(results_dir / "summary.csv", rows)
    report.write_results_md(rows, results_dir / "RESULTS.md", sweeps_module=sweeps)
    if plots and _PLOTS.value:
      from experiments.reporting import plots as plotting  # matplotlib only when plotting
      plotting.write_plots(rows, root, results_dir / "plots")

  failures = [] if _REPORT_ONLY.value else run_jobs(jobs, root, write)
  write(plots=True)
  print(f"wrote {results_dir / 'summary.csv'}, {results_dir / 'RESULTS.md'} and "
        f"{results_dir / 'plots'}/")
  if failures:
    print(f"{len(failures)} runs failed:")
    for run, message in failures:
      print(f"  {run}: {message}")
    sys.exit(1)


if __name__ == "__main__":
  # The command's flags, defined only when it runs: the experiment modules are imported
  # together (tests, tools) and several flag names recur among them.
  _SWEEP = flags.DEFINE_string("sweep", "main", f"One of {', '.join(sweeps.SWEEPS)}.")
  _DATASETS = flags.DEFINE_list("datasets", None, "Subset of the sweep's datasets.")
  _HORIZONS = flags.DEFINE_list("horizons", None, "Subset of the sweep's horizons.")
  _TEACHERS = flags.DEFINE_list("teachers", None,
                                "Teachers to distil from (default: the sweep's); any known one.")
  _VARIANTS = flags.DEFINE_list("variants", None,
                                "Subset of the sweep's distillation variants (e.g. no_feature).")
  _SEEDS = flags.DEFINE_integer("seeds", None, "Number of seeds (first N of 2021...2025).")
  _SEED = flags.DEFINE_integer("seed", None, "Only this seed of 2021...2025 (instead of --seeds): "
                               "e.g. a later seed on a second machine.")
  _STUDENT = flags.DEFINE_string("student", None, "Student model (default: the sweep's, dmlp).")
  _WORKDIR = flags.DEFINE_string("workdir", "runs/reproduce", "Root folder of the runs.")
  _RESULTS = flags.DEFINE_string("results", "results", "Folder for summary.csv, RESULTS.md, plots.")
  _REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rewrite tables and plots.")
  _PLOTS = flags.DEFINE_bool("plots", True, "Write the PNG plots.")
  _SMOKE = flags.DEFINE_bool("smoke", False, "A few steps a run: checks a set-up in seconds.")
  _ENSEMBLE = flags.DEFINE_bool("ensemble", False, "Train the seeds (and each seed's variants) "
                                "as ensembles: one program each instead of one run each.")
  _CACHE = flags.DEFINE_string("compilation_cache", str(compilation.default_directory()),
                               "Persistent compilation cache ('' turns it off).")
  app.run(main)
