"""scripts/width_transfer.py: a line per width with each optimizer's test loss
and its ratio to the first one's (an LO against itself: exactly 1)."""

import re

from cli_helpers import call, load_script

width_transfer = load_script("width_transfer")


def test_ratio_to_itself_is_one_per_width_and_baselines_are_refused(capsys):
  code, out, _ = call(width_transfer.main, [
      "a=mulo-s", "b=mulo-s", "--widths", "16", "--depth", "2", "--batch_size", "8",
      "--steps", "3", "--seeds", "1"], capsys)
  assert code == 0
  rows = re.findall(r"width +(\d+): a ([\d.]+) \(1\.00x\)  b ([\d.]+) \(([\d.]+)x\)", out)
  assert [int(r[0]) for r in rows] == [16]
  for _, a, b, ratio in rows:
    assert float(a) == float(b) > 0 and ratio == "1.00"
  code, _, err = call(width_transfer.main, ["adamw", "b=mulo-s"], capsys)
  assert code == 2 and "learned one" in err
