"""Coordinate check in miniature (scripts/coord_check.py): μP is width-stable, SP is not."""

import importlib.util
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "coord_check.py"
_spec = importlib.util.spec_from_file_location("coord_check", _SCRIPT)
coord_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(coord_check)


@pytest.fixture(scope="module")
def results():
  # 3 μAdam / Adam steps at lr 1e-2 on the same digits batches, widths 64 and 1024.
  return coord_check.coord_check("mlp", widths=(64, 1024), steps=3, lr=1e-2)


def test_mup_activations_are_width_independent(results):
  mup = results["mup"]
  for metric in ("act", "dact"):
    for layer in ("input", "hidden_1", "readout"):
      g = coord_check.growth(mup, metric, layer)
      assert 0.8 < g < 1.25, (metric, layer, g)
  # The hidden matrix's steps shrink like 1/fan_in: 16x wider -> 16x smaller entries.
  assert coord_check.growth(mup, "dw", "hidden_1") == pytest.approx(1 / 16, rel=0.2)


def test_sp_with_adam_blows_up_with_width(results):
  sp = results["sp"]
  assert coord_check.growth(sp, "act", "readout") > 5       # logits: ~linear in width
  assert coord_check.growth(sp, "dact", "hidden_1") > 2
  assert coord_check.growth(sp, "act", "input") == pytest.approx(1.0, abs=0.25)  # fixed fan-in


def test_plot_is_written(results, tmp_path):
  out = tmp_path / "cc.png"
  coord_check.plot(results, out, "test")
  assert out.stat().st_size > 10_000
