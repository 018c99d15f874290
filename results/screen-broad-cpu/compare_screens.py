"""Does a screen rank LOs as the held-out suite does? (docs/meta-training-runs.md,
"A broader screen".)

    python results/screen-broad-cpu/compare_screens.py SCREEN_OUTPUT.md ...

SCREEN_OUTPUT: ``scripts/screen_checkpoints.py --suite screen-broad-cpu`` output
(several files may hold different candidates; one must hold ``mulo-m``, the
reference). The narrow screen's score is the same runs over its first six
tasks (``screen-user-cpu``); the broad one's over all fourteen. Held-out score:
geometric mean over the six ``heldout-user-cpu`` tasks of the test-loss ratio to
tuned AdamW, from the committed reports named in HELDOUT (8 seeds where such a
report exists, else 3).
"""

import itertools
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "results" / "heldout-adaptive-cpu"
NARROW = 6
RESOLVED = 0.03   # pairs whose held-out scores differ by more than 3%
# candidate label -> (held-out report directory, its label for the candidate there)
HELDOUT = {
    "theta0": ("mulo-m-8seeds", "theta0"),
    "a50000": ("step-50000", "best50000"),
    "a50000-meanfree": ("step-50000-meanfree", "meanfree50000"),
    "a2-12000": ("a2-step-12000", "a2best"),
    "a2-23000": ("a2-step-23000", "a2s23000"),
    "a4-5000": ("mulo-m-8seeds", "mulo-m"),
    "a5-4000": ("a5-step-4000", "a5"),
    "a16-2000": ("a16-2000-8", "a16-2000"),
    "a18-4400": ("a18-4400-8", "a18-4400"),
    "mulo-m": ("mulo-m-test-curves", "mulo-m"),
}


def heldout_score(directory: str, label: str) -> float:
  losses: dict[str, dict[str, float]] = {}
  for line in (ROOT / directory / "report.md").read_text().splitlines():
    c = [x.strip() for x in line.strip().strip("|").split("|")]
    if len(c) >= 11 and c[0].startswith("user-") and re.fullmatch(r"\d+", c[1]):
      losses.setdefault(c[2], {})[c[0]] = float(c[5])
  mine, adamw = losses[label], losses["adamw"]
  assert len(mine) == 6 and set(mine) == set(adamw), (directory, sorted(mine))
  return math.exp(sum(math.log(mine[t] / adamw[t]) for t in mine) / 6)


def screen_losses(paths: list[str]) -> dict[str, list[float]]:
  rows = {}
  for path in paths:
    for line in Path(path).read_text().splitlines():
      c = [x.strip() for x in line.strip().strip("|").split("|")]
      if len(c) == 15 and c[0] != "optimizer" and not c[0].startswith("-"):
        rows[c[0]] = [float(x.split("/")[0]) for x in c[1:]]
  return rows


def ranks(xs: list[float]) -> list[float]:
  order = sorted(range(len(xs)), key=lambda i: xs[i])
  r = [0.0] * len(xs)
  for pos, i in enumerate(order):
    r[i] = pos + 1.0
  return r


def spearman(a: list[float], b: list[float]) -> float:
  ra, rb = ranks(a), ranks(b)
  ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
  cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
  return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def main(paths: list[str]) -> None:
  losses = screen_losses(paths)
  ref = losses["mulo-m"]
  names = [n for n in HELDOUT if n in losses]
  held = {n: heldout_score(*HELDOUT[n]) for n in names}

  def score(n: str, k: int) -> float:
    return math.exp(sum(math.log(x / r) for x, r in zip(losses[n][:k], ref[:k])) / k)
  narrow = {n: score(n, NARROW) for n in names}
  broad = {n: score(n, len(ref)) for n in names}
  print("| candidate | held out (vs tuned AdamW) | narrow screen (vs mulo-m) | broad screen |")
  print("|---|---|---|---|")
  for n in sorted(names, key=held.get):
    print(f"| {n} | {held[n]:.3f} | {narrow[n]:.3f} | {broad[n]:.3f} |")
  pairs = [(a, b) for a, b in itertools.combinations(names, 2)
           if abs(math.log(held[a] / held[b])) > math.log1p(RESOLVED)]
  for label, s in (("narrow", narrow), ("broad", broad)):
    agree = sum((held[a] < held[b]) == (s[a] < s[b]) for a, b in pairs)
    print(f"{label}: Spearman {spearman([held[n] for n in names], [s[n] for n in names]):.3f}; "
          f"orders {agree} of {len(pairs)} pairs apart by > {RESOLVED:.0%} held out as held out does")


if __name__ == "__main__":
  main(sys.argv[1:])
