"""Render evaluation results (``training.evaluation.evaluate``) as report.md,
PNG loss-curve plots and, optionally, a wandb run.

Every number in report.md is a value of results.json passed through one of the
``fmt_*`` formatters below (formatting only, nothing recomputed), so the two
always agree; tests parse the tables to check it.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from training.stats import TEST_CURVE_POINTS

PLOTS_DIR = "plots"
TASK_COLUMNS = ("task", "steps", "optimizer", "LR", "final train loss", "test loss",
                "test loss s.e.", "test accuracy", "max loss spike", "speedup vs tuned AdamW",
                "rank (test)", "rank (train)")
SUMMARY_COLUMNS = ("optimizer", "average rank (test loss)", "average rank (train loss)",
                   "max loss spike", "diverged runs")


# --------------------------------------------------------------------------
# Formatting: the only transformation numbers go through on their way to report.md.

def fmt_loss(x: Optional[float]) -> str:
  return "diverged" if x is None else f"{x:.4g}"


def fmt_se(x: Optional[float]) -> str:
  return "—" if x is None else f"{x:.2g}"


def standard_error(per_seed) -> Optional[float]:
  """The standard error of the mean over seeds (std with ddof 1 over sqrt(n));
  None with fewer than 2 seeds or any diverged (non-finite) one."""
  if per_seed is None:
    return None
  x = np.asarray([np.nan if v is None else v for v in per_seed], np.float64)
  if x.size < 2 or not np.all(np.isfinite(x)):
    return None
  return float(np.std(x, ddof=1) / np.sqrt(x.size))


def fmt_accuracy(x: Optional[float]) -> str:
  return "—" if x is None else f"{x:.4f}"


def fmt_lr(x: Optional[float]) -> str:
  return "untuned" if x is None else f"{x:g}"


def fmt_step_mult(x: float) -> str:
  return f"step×{x:g}"


def fmt_hparam(lr: Optional[float], step_mult: Optional[float], tuned: bool) -> str:
  """The LR column: a baseline's tuned LR, ``step×M`` for an LO whose step
  multiplier was tuned, ``untuned`` for an LO as exported (step multiplier 1)."""
  if lr is not None:
    return fmt_lr(lr)
  return fmt_step_mult(step_mult) if tuned and step_mult is not None else "untuned"


def fmt_choice(t: dict[str, Any], x: Optional[float]) -> str:
  """A tuning grid value: an LR, or ``×M`` for a step multiplier."""
  if t.get("hparam") == "step_mult":
    return "—" if x is None else f"×{x:g}"
  return fmt_lr(x)


def fmt_rank(x: float) -> str:
  return f"{x:.2f}"


def fmt_spike(x: Optional[float]) -> str:
  return "diverged" if x is None else f"{x:.3g}×"


def fmt_speedup(s: dict[str, Any]) -> str:
  if s is None or s.get("value") is None:
    return "—"
  prefix = "" if s["bound"] == "=" else s["bound"]
  return f"{prefix}{s['value']:.3g}×"


def plot_name(task: str, num_steps: int) -> str:
  return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', task)}_n{num_steps}.png"


# --------------------------------------------------------------------------
# Rows shared by report.md and wandb.

def task_rows(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
  """One dict per (suite, task, optimizer), raw values from results.json."""
  for suite, data in results["suites"].items():
    for task in data["tasks"]:
      for label, r in task["results"].items():
        yield {"suite": suite, "task": task["task"], "steps": task["num_steps"],
               "optimizer": label, "lr": r["learning_rate"],
               "step_mult": r.get("step_mult"), "tuned": r.get("tuning") is not None,
               "final_train_loss": r["final_train_loss"], "test_loss": r["test_loss"],
               "test_loss_se": standard_error(r.get("test_loss_per_seed")),
               "test_accuracy": r["test_accuracy"], "speedup": r["speedup"],
               "rank": r["rank"], "train_rank": r.get("train_rank", r["rank"]),
               "max_loss_spike": r.get("max_loss_spike"), "num_diverged": r["num_diverged"],
               "num_seeds": len(r["seeds"])}


def markdown_table(columns, rows) -> list[str]:
  """The lines of a markdown table (also ``scripts/gpu_check.py``'s); a cell's
  ``|`` is escaped and its line breaks folded, so every row stays one row."""
  cell = lambda c: str(c).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
  lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
  return lines


def _notes(results: dict[str, Any]) -> list[str]:
  """Every way this run departs from the full protocol, said plainly."""
  s = results["settings"]
  notes = list(results.get("notes") or [])
  if s.get("max_steps") is not None:
    capped = sorted({(t["task"], t["suite_num_steps"], t["num_steps"])
                     for d in results["suites"].values() for t in d["tasks"]
                     if t["num_steps"] < t["suite_num_steps"]})
    if capped:
      notes.append(f"Horizons capped at --max_steps {s['max_steps']}: "
                   + "; ".join(f"{name} {full} → {n} steps" for name, full, n in capped) + ".")
  if s.get("lr_grid_points") is not None:
    notes.append(f"LR grids subsampled to {s['lr_grid_points']} evenly spaced points of "
                 "default_lr_grid (the protocol uses the full 7–9-point grid).")
  if len(s["seeds"]) != 3 or len(s["tuning_seeds"]) != 3:
    notes.append(f"{len(s['seeds'])} reported seeds and {len(s['tuning_seeds'])} tuning "
                 "seeds (the protocol uses 3 and 3).")
  if any(o.get("added_as_reference") for o in results["optimizers"]):
    notes.append("Tuned AdamW was not requested; it was added as the speedup reference.")
  if not s.get("step_mult_tuned", True) and any(
      o.get("kind") == "learned" for o in results["optimizers"]):
    notes.append("Learned optimizers are reported untuned only (--no_step_mult_tuning); "
                 "the baselines were tuned.")
  what = lambda t: "step multiplier" if t.get("hparam") == "step_mult" else "LR"
  for t in results["tuning"]:
    if t["at_grid_edge"]:
      notes.append(f"{t['optimizer']}: the chosen {what(t)} {fmt_choice(t, _chosen(t))} on "
                   f"{t['tuning_task']} ({t['num_steps']} steps) is at the edge of its grid.")
  for t in results["tuning"]:
    if t["all_diverged"]:
      notes.append(f"{t['optimizer']}: every {what(t)} diverged on {t['tuning_task']}; "
                   "the smallest was used.")
  return notes


def _chosen(t: dict[str, Any]) -> Optional[float]:
  return t.get("chosen", t.get("chosen_lr"))


def render_markdown(results: dict[str, Any], plots: dict[tuple[str, int], str]) -> str:
  v, d, s = results["versions"], results["device"], results["settings"]
  lines = ["# Optimizer evaluation", "",
           f"Created {results['created']} on {d['device_kind']} ({d['platform']}, "
           f"{d['device_count']} device(s)) in {results['seconds']:.0f} s. "
           f"jax {v['jax']}, optax {v['optax']}, flax {v['flax']}, lopt commit "
           f"{v['lopt_commit'] or 'unknown'}{' (dirty)' if v.get('lopt_dirty') else ''}.", "",
           f"Seeds {s['seeds']}; tuning seeds {s['tuning_seeds']}; final metrics on "
           f"{s['eval_batches']} fixed batches per split. Reference: tuned "
           f"{s['reference']}.", ""]
  if results.get("command"):
    lines += ["Command: `" + shlex.join(results["command"]) + "`", ""]
  notes = _notes(results)
  if notes:
    lines += ["**Departures from the full protocol**", ""] + [f"- {n}" for n in notes] + [""]
  lines += ["## Protocol", "", results["protocol"], "",
            "Final train/test loss and accuracy: mean over seeds (a loss reads `diverged` "
            "if any seed diverged); test loss s.e.: its standard error over seeds (on "
            "small data trained long, seeds differ by tens of percent). Speedup vs tuned "
            "AdamW: steps AdamW's median curve needs to reach the optimizer's final median "
            "loss ÷ the optimizer's steps (`>`: AdamW never reached it, a lower bound; `<`: "
            "reached at its first point, an upper bound). Max loss spike: the highest "
            "minibatch loss ÷ the step-0 loss (max over seeds). "
            "Rank: per task by mean test loss (and, second, by final train loss); averaged "
            "per suite. Plots: the training loss (minibatch, windowed) and, beside it, the "
            "test loss on the same fixed batches at about "
            f"{TEST_CURVE_POINTS} points along training, seed median and min–max band.", ""]
  rows = list(task_rows(results))
  for suite, data in results["suites"].items():
    lines += [f"## Suite `{suite}`", ""]
    summary = [(label, fmt_rank(x["average_rank"]),
                fmt_rank(x.get("average_train_rank", x["average_rank"])),
                fmt_spike(x.get("max_loss_spike")), f"{x['num_diverged']}/{x['num_runs']}")
               for label, x in data["summary"].items()]
    lines += markdown_table(SUMMARY_COLUMNS, summary) + [""]
    table = [(r["task"], r["steps"], r["optimizer"],
              fmt_hparam(r["lr"], r["step_mult"], r["tuned"]),
              fmt_loss(r["final_train_loss"]), fmt_loss(r["test_loss"]),
              fmt_se(r["test_loss_se"]), fmt_accuracy(r["test_accuracy"]),
              fmt_spike(r["max_loss_spike"]),
              fmt_speedup(r["speedup"]), fmt_rank(r["rank"]), fmt_rank(r["train_rank"]))
             for r in rows if r["suite"] == suite]
    lines += markdown_table(TASK_COLUMNS, table) + [""]
    for task in data["tasks"]:
      path = plots.get((task["task"], task["num_steps"]))
      if path:
        lines += [f"![{task['task']}, {task['num_steps']} steps]({path})", ""]
  lines += ["## Tuning", "",
            "Mean test loss over tuning seeds per grid point, the tuning criterion "
            "(`diverged`: any seed diverged). Baselines tune their LR; a learned optimizer's "
            "`(tuned)` row tunes its step multiplier (`×M`) over as many points.", ""]
  tuning = [(t["optimizer"], t["tuning_task"], t["num_steps"], fmt_choice(t, _chosen(t)),
             ", ".join(f"{fmt_choice(t, lr)}: {fmt_loss(x)}"
                       for lr, x in zip(t.get("grid", t["lr_grid"]),
                                        t.get("mean_test_loss", t["mean_final_train_loss"]))))
            for t in results["tuning"]]
  lines += markdown_table(("optimizer", "tuning task", "steps", "chosen LR / step mult",
                   "value: test loss"), tuning)
  return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Plots.

def plot_curves(results: dict[str, Any], workdir: str) -> dict[tuple[str, int], str]:
  """One PNG per (task, horizon): seed-median training loss and min–max band,
  and beside it the test loss along training where the runs measured it."""
  import matplotlib
  matplotlib.use("Agg")  # headless; must precede pyplot
  import matplotlib.pyplot as plt

  out_dir = Path(workdir) / PLOTS_DIR
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {}
  for data in results["suites"].values():
    for task in data["tasks"]:
      key = (task["task"], task["num_steps"])
      if key in paths:
        continue
      with_test = any(r.get("test_curve") for r in task["results"].values())
      fig, axes = plt.subplots(1, 2 if with_test else 1, figsize=(11 if with_test else 6.4, 4.2),
                               squeeze=False)
      train_ax, test_ax = axes[0, 0], axes[0, -1]
      for label, r in task["results"].items():
        lr = "" if r["learning_rate"] is None else f" (lr {fmt_lr(r['learning_rate'])})"
        if r.get("tuning") and r.get("step_mult") is not None and r["learning_rate"] is None:
          lr = f" ({fmt_step_mult(r['step_mult'])})"
        line = _median_and_band(train_ax, r["curve"]["step"], r["curve"]["train_loss_median"],
                                r["curve"]["train_loss_per_seed"], label + lr)
        if with_test and r.get("test_curve"):
          c = r["test_curve"]
          _median_and_band(test_ax, c["step"], c["test_loss_median"], c["test_loss_per_seed"],
                           label + lr, color=line.get_color())
      train_ax.set(ylabel="training loss (seed median, min–max band)")
      if with_test:
        test_ax.set(ylabel="test loss (seed median, min–max band)")
      for ax in axes[0]:
        ax.set(yscale="log", xlabel="step")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
      fig.suptitle(f"{task['task']}, {task['num_steps']} steps", fontsize=9)
      fig.tight_layout()
      name = plot_name(*key)
      fig.savefig(out_dir / name, dpi=110)
      plt.close(fig)
      paths[key] = f"{PLOTS_DIR}/{name}"
  return paths


def _median_and_band(ax, steps, median, per_seed, label, color=None):
  """The seed median as a line and the seeds' min–max as a band; the line."""
  per_seed = np.array(per_seed, dtype=np.float64)  # None (non-finite in JSON) -> nan
  line, = ax.plot(np.asarray(steps), np.array(median, dtype=np.float64), label=label, lw=1.5,
                  color=color)
  with np.errstate(all="ignore"):
    lo, hi = np.nanmin(per_seed, axis=0), np.nanmax(per_seed, axis=0)
  ax.fill_between(np.asarray(steps), lo, hi, color=line.get_color(), alpha=0.2, lw=0)
  return line


def write_report(results: dict[str, Any], workdir: str) -> Path:
  """Write WORKDIR/report.md and WORKDIR/plots/*.png; return the report path."""
  plots = plot_curves(results, workdir)
  path = Path(workdir) / "report.md"
  path.write_text(render_markdown(results, plots))
  return path


# --------------------------------------------------------------------------
# wandb (optional; imported only when asked for).

def log_to_wandb(results: dict[str, Any], workdir: str, project: str = "lopt-eval") -> Any:
  """One wandb run with the summary table and plots, in ``tracking.wandb_mode()``
  (offline without an API key). Returns the run's directory, or None without wandb."""
  try:
    import wandb
  except ImportError:
    print("wandb is not installed: skipping --wandb (report.md and results.json have it all).")
    return None
  from training.tracking import wandb_mode
  run = wandb.init(project=project, dir=workdir, mode=wandb_mode(), job_type="evaluation",
                   name=os.path.basename(os.path.abspath(workdir)),
                   config={**results["settings"], "protocol": results["protocol"],
                           "versions": results["versions"], "device": results["device"]})
  columns = ["suite", "task", "steps", "optimizer", "lr", "step_mult", "final_train_loss",
             "test_loss", "test_loss_se", "test_accuracy", "max_loss_spike", "speedup",
             "speedup_bound", "rank", "train_rank", "num_diverged"]
  speedups = lambda r: {"speedup": (r["speedup"] or {}).get("value"),
                        "speedup_bound": (r["speedup"] or {}).get("bound")}
  rows = [[{**r, **speedups(r)}[c] for c in columns] for r in task_rows(results)]
  record = {"summary": wandb.Table(columns=columns, data=rows)}
  for path in sorted((Path(workdir) / PLOTS_DIR).glob("*.png")):
    record[f"curves/{path.stem}"] = wandb.Image(str(path))
  run.log(record)
  for suite, data in results["suites"].items():
    for label, x in data["summary"].items():
      run.summary[f"{suite}/{label}/average_rank"] = x["average_rank"]
  run_dir = run.dir
  run.finish()
  return run_dir
