"""The μLO reference form and the shipped mulo-m / mulo-s / sp-lo give the same
updates, bit for bit, as before the step-rule refactor (tests/make_lo_golden.py
recorded them)."""

from pathlib import Path

import numpy as np

import make_lo_golden


def test_updates_are_bit_identical_to_the_recorded_ones():
  want = np.load(Path(__file__).parent / "data" / "lo_golden.npz")
  got = make_lo_golden.compute()
  assert sorted(got) == sorted(want.files)
  for name in want.files:
    assert got[name].dtype == want[name].dtype, name
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
