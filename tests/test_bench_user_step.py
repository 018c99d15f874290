"""scripts/bench_user_step.py --quick runs and prints its markdown table: one
row per model, finite positive ms/step and ratios for every optimizer."""

import math

from cli_helpers import load_script


def test_quick_run_prints_the_table(capsys):
  bench = load_script("bench_user_step")
  assert bench.main(["--quick", "--models", "mlp-tabular,cnn", "--steps", "1"]) == 0
  out = capsys.readouterr().out
  lines = [line for line in out.splitlines() if line.startswith("|")]
  head = [c.strip() for c in lines[0].strip("|").split("|")]
  assert head == ["model", "params", "batch", "AdamW ms/step", "mulo-m ms/step", "mulo-m ×AdamW",
                  "mulo-r ms/step", "mulo-r ×AdamW"]
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
  assert [r[0] for r in rows] == ["MLP 30→32×2→2", "CNN 4/8 channels"]
  for row in rows:
    numbers = [float(x) for x in row[3:]]
    assert len(numbers) == 5 and all(math.isfinite(x) and x > 0 for x in numbers), row
