"""The paper's tables in Markdown, from the rows of ``summary.py`` (one a run).

A cell is a mean +- std over seeds; every table compares like with like, counting only the
(horizon, seed) points at which all of its columns ran.
"""

import math

import numpy as np

from experiments.reporting.summary import reference_protocol


def _stats(values):
  a = np.asarray(values, float)
  return (float(a.mean()), float(a.std())) if a.size else (math.nan, math.nan)


def _cell(values) -> str:
  mean, std = _stats(values)
  if math.isnan(mean):
    return "—"
  return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ± {std:.3f}"


def _seed_cell(rows) -> str:
  """Each seed's mean over the horizons it ran, then mean ± std over the seeds (a std over
  horizons would mostly measure how much harder H=720 is than H=96)."""
  per_seed = {}
  for r in rows:
    per_seed.setdefault(r["seed"], []).append(r["test_mse"])
  return _cell([np.mean(v) for v in per_seed.values()])


def _select(rows, **match):
  return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _improvement(base, new) -> str:
  if not base or not new or math.isnan(base) or math.isnan(new):
    return "—"
  return f"{100 * (base - new) / base:+.1f}%"


def _paper(value, which: int = 0) -> str:
  if value is None:
    return "—"
  if isinstance(value, tuple):
    return f"{value[which]:.3f}" if which < len(value) else "—"
  return f"{value:.3f}" if which == 0 else "—"


def main_table(rows, teacher: str, paper_averages: dict, variant: str = "full") -> str:
  """Table 1 layout for one teacher: datasets x horizons plus each dataset's average."""
  head = ("| dataset | H | seeds | teacher MSE | teacher MAE | MLP MSE | MLP MAE | "
          "MLP + TimeDistill MSE | MLP + TimeDistill MAE | vs MLP | vs teacher |")
  lines = [head, "|" + " --- |" * 11]
  for dataset in sorted({r["dataset"] for r in rows}):
    per_h = {}
    for h in sorted({r["horizon"] for r in _select(rows, dataset=dataset)}):
      t = _select(rows, dataset=dataset, horizon=h, role="teacher", model=teacher)
      m = _select(rows, dataset=dataset, horizon=h, role="mlp")
      d = _select(rows, dataset=dataset, horizon=h, role="distilled", teacher=teacher,
                  variant=variant)
      if not d:
        continue
      # Seed-matched: a teacher run with fewer seeds than the MLP compares with those seeds.
      t, m = _same_runs(t, d), _same_runs(m, d)
      per_h[h] = (t, m, d)
      lines.append(_main_line(dataset, str(h), t, m, d))
    if len(per_h) > 1:
      lines.append(_main_line(dataset, _avg_label(per_h), *_horizon_average(per_h.values())))
    paper = paper_averages.get(dataset, {})
    if paper and per_h:
      lines.append(
          f"| {dataset} | paper avg | 5 | {_paper(paper.get(teacher))} | — | "
          f"{_paper(paper.get('mlp'))} | — | {_paper(paper.get('distilled'))} | "
          f"{_paper(paper.get('distilled'), 1)} | — | — |")
  return "\n".join(lines)


def _points(rows) -> set:
  """The (horizon, seed) points ``rows`` cover."""
  return {(r["horizon"], r["seed"]) for r in rows}


def _at(rows, points) -> list:
  """The ``rows`` at one of ``points`` ((horizon, seed) pairs)."""
  return [r for r in rows if (r["horizon"], r["seed"]) in points]


def _same_runs(rows, like) -> list:
  """The ``rows`` whose (horizon, seed) is one of ``like``'s."""
  return _at(rows, _points(like))


def _complete(points) -> set:
  """The (horizon, seed) ``points`` of the seeds present at every horizon of ``points``. A seed
  that ran only H=96 would otherwise pull an average over the horizons towards the easiest."""
  horizons = {h for h, _ in points}
  return {(h, s) for h, s in points if all((other, s) in points for other in horizons)}


def _complete_seeds(rows) -> list:
  """The ``rows`` of the seeds that ran at every horizon ``rows`` holds."""
  return _at(rows, _complete(_points(rows)))


def _average_over_horizons(groups) -> list:
  """Rows whose metrics are each seed's mean over the horizons (seeds present at every H)."""
  seeds = set.intersection(*({r["seed"] for r in g} for g in groups)) if groups else set()
  out = []
  for seed in sorted(seeds):
    sel = [next(r for r in g if r["seed"] == seed) for g in groups]
    out.append(dict(seed=seed, test_mse=np.mean([r["test_mse"] for r in sel]),
                    test_mae=np.mean([r["test_mae"] for r in sel])))
  return out


def _horizon_average(per_h) -> list:
  """``per_h``: one tuple of row groups a horizon (the same columns each). Each column's rows
  averaged over the horizons per seed (then mean +- std over seeds is the table's cell)."""
  per_h = list(per_h)
  return [_average_over_horizons([groups[i] for groups in per_h]) for i in range(len(per_h[0]))]


def _avg_label(horizons) -> str:
  return f"**avg** ({len(horizons)} H)"


def _main_line(dataset, h, t, m, d) -> str:
  mse = lambda g: [r["test_mse"] for r in g]
  mae = lambda g: [r["test_mae"] for r in g]
  mean = lambda g: _stats(mse(g))[0]
  return (f"| {dataset} | {h} | {len(d)} | {_cell(mse(t))} | {_cell(mae(t))} | {_cell(mse(m))} "
          f"| {_cell(mae(m))} | {_cell(mse(d))} | {_cell(mae(d))} | "
          f"{_improvement(mean(m), mean(d))} | {_improvement(mean(t), mean(d))} |")


def variants_table(rows, teacher: str, variants) -> str:
  """Ablation / sensitivity layout: datasets x variants, distilled MSE averaged over H (mean ±
  std over seeds). Each dataset's row compares like with like: every column, the MLP's too,
  covers only the (horizon, seed) points at which all the variants shown there ran, and of
  those only the seeds that ran at each of their horizons."""
  # Only the variants that ran: the sensitivity grid has 16, usually run in part.
  names = [v.name for v in variants
           if _select(rows, role="distilled", teacher=teacher, variant=v.name)]
  lines = ["| dataset | runs | MLP | " + " | ".join(names) + " |",
           "|" + " --- |" * (len(names) + 3)]
  for dataset in sorted({r["dataset"] for r in rows}):
    runs = {n: _select(rows, dataset=dataset, role="distilled", teacher=teacher, variant=n)
            for n in names}
    # "full" also runs in the main grid, at every H and seed; an ablation run at one point
    # must not be set against an average over all of them.
    if not any(v for n, v in runs.items() if n != "full"):
      continue  # no variant ran here beyond the main grid's: nothing to compare
    points = _complete(set.intersection(*(_points(v) for v in runs.values() if v)))
    if not points:
      continue
    runs = {n: _at(v, points) for n, v in runs.items()}
    mlp = _at(_select(rows, dataset=dataset, role="mlp"), points)
    horizons = ", ".join(str(h) for h in sorted({h for h, _ in points}))
    seeds = len({s for _, s in points})
    lines.append(f"| {dataset} | H={horizons}; {seeds} seed{'s' * (seeds > 1)} | "
                 f"{_seed_cell(mlp)} | " + " | ".join(_seed_cell(runs[n]) for n in names) + " |")
  return "\n".join(lines)


def _pair(row) -> str:
  """A distilled run's alpha / beta as the sensitivity grid names it (``a1_b0.5``)."""
  return f"a{float(row['alpha']):g}_b{float(row['beta']):g}"


def validation_pick_table(rows, teacher: str, pairs) -> str:
  """The alpha / beta pair a user would pick without the test set: per dataset, horizon and
  seed, the one of ``pairs`` (``a1_b0.5``, ...) whose student has the lowest validation MSE,
  beside the tuned pair ("full") and the best pair on test (hindsight). The tuned run counts
  as its pair of the grid. Only the points where every pair ran count; each cell is the mean
  test MSE over their seeds. Below a dataset's horizons, the average over them and the one
  pair for every horizon, as the reference tunes (docs/method.md, "Training settings"): by the
  validation MSE averaged over the horizons, and by the test MSE in hindsight."""
  lines = ["| dataset | H | seeds | tuned pair | picked by validation | its test MSE | "
           "best on test | its test MSE |", "|" + " --- |" * 8]
  grid = [r for r in rows if r["role"] == "distilled" and r["teacher"] == teacher
          and r["variant"] in (*pairs, "full") and r.get("val_mse") is not None]
  names = lambda picked: ", ".join(sorted({pair for pair, _ in picked}))
  for dataset in sorted({r["dataset"] for r in grid}):
    per_h, grids = [], {}
    # The tuned runs from ``rows``: they count here even without a validation MSE.
    tuned_runs = _select(rows, dataset=dataset, role="distilled", teacher=teacher,
                         variant="full")
    for h in sorted({r["horizon"] for r in grid if r["dataset"] == dataset}):
      at = _select(grid, dataset=dataset, horizon=h)
      points = {s: {_pair(r): r for r in _select(at, seed=s)} for s in {r["seed"] for r in at}}
      # Candidates are the grid's pairs only (a tuned pair off the grid is no candidate).
      points = {s: {pair: p[pair] for pair in pairs} for s, p in sorted(points.items())
                if set(p) >= set(pairs)}
      if not points:
        continue
      picks = [min(p.items(), key=lambda kv: kv[1]["val_mse"]) for p in points.values()]
      best = [min(p.items(), key=lambda kv: kv[1]["test_mse"]) for p in points.values()]
      tuned = [r["test_mse"] for s in points for r in _select(tuned_runs, horizon=h, seed=s)]
      tuned = tuned if len(tuned) == len(points) else []
      picked, hindsight = ([r["test_mse"] for _, r in g] for g in (picks, best))
      per_h.append((tuned, picked, hindsight))
      grids[h] = points
      lines.append(f"| {dataset} | {h} | {len(points)} | {_cell(tuned)} | {names(picks)} | "
                   f"{_cell(picked)} | {names(best)} | {_cell(hindsight)} |")
    if len(per_h) > 1:
      # Mean over the horizons of each horizon's mean over its seeds.
      avg = [f"{np.mean([np.mean(x) for x in col]):.3f}" if all(col) else "—"
             for col in zip(*per_h)]
      lines.append(f"| {dataset} | average of {len(per_h)} H | | {avg[0]} | | {avg[1]} | | "
                   f"{avg[2]} |")
      seeds = set.intersection(*(set(points) for points in grids.values()))
      if seeds:
        mean = lambda key, pair: np.mean([grids[h][s][pair][key] for h in grids for s in seeds])
        by_val = min(pairs, key=lambda pair: mean("val_mse", pair))
        by_test = min(pairs, key=lambda pair: mean("test_mse", pair))
        tuned = [r["test_mse"] for h in grids for s in seeds
                 for r in _select(tuned_runs, horizon=h, seed=s)]
        tuned = f"{np.mean(tuned):.3f}" if len(tuned) == len(grids) * len(seeds) else "—"
        lines.append(f"| {dataset} | one pair for all {len(grids)} H | {len(seeds)} | {tuned} | "
                     f"{by_val} | {mean('test_mse', by_val):.3f} | {by_test} | "
                     f"{mean('test_mse', by_test):.3f} |")
  return "\n".join(lines)


def _points_table(rows, head, columns) -> str:
  """Per dataset, a line a horizon and the average over the horizons (each seed's mean, then
  mean ± std over seeds) of the columns' test MSE. ``columns(at)`` returns one row group a
  column of ``head``, ``at(**match)`` selecting that dataset's rows; only the (horizon, seed)
  points where every column ran count, so each line compares like with like."""
  lines = ["| dataset | H | seeds | " + " | ".join(head) + " |", "|" + " --- |" * (3 + len(head))]
  for dataset in sorted({r["dataset"] for r in rows}):
    runs = columns(lambda **match: _select(rows, dataset=dataset, **match))
    points = set.intersection(*(_points(g) for g in runs))
    if not points:
      continue
    runs = [_at(g, points) for g in runs]
    horizons = sorted({h for h, _ in points})
    per_h = [[_select(g, horizon=h) for g in runs] for h in horizons]
    for h, groups in zip(horizons, per_h):
      lines.append(f"| {dataset} | {h} | {len(groups[0])} | "
                   + " | ".join(_cell([r["test_mse"] for r in g]) for g in groups) + " |")
    if len(horizons) > 1:
      avg = _horizon_average(per_h)
      lines.append(f"| {dataset} | {_avg_label(horizons)} | {len(avg[0])} | "
                   + " | ".join(_cell([r["test_mse"] for r in g]) for g in avg) + " |")
  return "\n".join(lines)


def student_table(rows, teacher: str, names) -> str:
  """Each student of ``names`` without and with distillation from ``teacher`` (the tuned
  "full" variant), at the (horizon, seed) points where every one of them ran both."""
  def columns(at):
    runs = [at(role="teacher", model=teacher, variant="")]
    for n in names:
      runs += [at(role="mlp", model=n),
               at(role="distilled", model=n, teacher=teacher, variant="full")]
    return runs
  head = ["teacher"] + [c for n in names for c in (n, f"{n} + TimeDistill")]
  return _points_table(rows, head, columns)


def teacher_variant_table(rows, teacher: str, variant: str) -> str:
  """The MLP, ``teacher`` as the reference trains it and as ``variant`` does, and the student
  distilled from each, at the (horizon, seed) points where all five ran."""
  def columns(at):
    return [at(role="mlp"), at(role="teacher", model=teacher, variant=""),
            at(role="teacher", model=teacher, variant=variant),
            at(role="distilled", teacher=teacher, variant="full"),
            at(role="distilled", teacher=teacher, variant=variant)]
  head = ["MLP", "teacher", f"teacher ({variant})", "MLP + TimeDistill",
          f"MLP + TimeDistill ({variant} teacher)"]
  return _points_table(rows, head, columns)


def teachers_table(rows, teachers) -> str:
  """Teacher variety: per dataset, each teacher's MSE and its distilled MLP's, averaged over
  the horizons and the seeds that ran at all of them (as the main table's average row); the
  teacher and the MLP it improves on are averaged over the distilled runs' (H, seed) only."""
  lines = ["| dataset | MLP | " + " | ".join(teachers) + " |", "|" + " --- |" * (len(teachers) + 2)]
  mse = lambda g: _stats([r["test_mse"] for r in g])[0]
  fmt = lambda x: "—" if math.isnan(x) else f"{x:.3f}"
  for dataset in sorted({r["dataset"] for r in rows}):
    mlp = _select(rows, dataset=dataset, role="mlp")
    cells = []
    for t in teachers:
      tm = _select(rows, dataset=dataset, role="teacher", model=t)
      dm = _complete_seeds(
          _select(rows, dataset=dataset, role="distilled", teacher=t, variant="full"))
      cells.append("—" if not dm else
                   f"{fmt(mse(_same_runs(tm, dm)))} → {fmt(mse(dm))} "
                   f"({_improvement(mse(_same_runs(mlp, dm)), mse(dm))})")
    if any(c != "—" for c in cells):
      lines.append(f"| {dataset} | {_seed_cell(_complete_seeds(mlp))} | " + " | ".join(cells)
                   + " |")
  return "\n".join(lines)


def efficiency_table(rows) -> str:
  """Per dataset and model: mean parameters, inference ms, train-step ms and MSE over runs."""
  lines = ["| dataset | model | role | runs | params | inference ms / batch | ms / train step "
           "| test MSE |", "|" + " --- |" * 8]
  for dataset in sorted({r["dataset"] for r in rows}):
    for (role, model), group in groups(_select(rows, dataset=dataset)).items():
      lines.append(
          f"| {dataset} | {model} | {role} | {len(group)} | "
          f"{np.mean([r['params'] for r in group]):,.0f} | "
          f"{np.median([r['inference_ms'] for r in group]):.2f} | "
          f"{np.median([r['ms_per_train_step'] for r in group]):.1f} | "
          f"{np.mean([r['test_mse'] for r in group]):.3f} |")
  return "\n".join(lines)


def groups(rows) -> dict:
  """Rows by ``(role, label)``: one group a model, the distilled ones labelled by teacher;
  ablation, sensitivity and teacher variants left out, and only the seeds that ran at every
  horizon the model ran (as in the average rows); a model without such a seed is left out.
  Shared by the efficiency table and plot."""
  out = {}
  for r in rows:
    if not reference_protocol(r):
      continue
    label = r["model"] if r["role"] != "distilled" else f"{r['model']} ← {r['teacher']}"
    out.setdefault((r["role"], label), []).append(r)
  complete = {key: _complete_seeds(group) for key, group in sorted(out.items())}
  return {key: group for key, group in complete.items() if group}

