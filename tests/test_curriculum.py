"""The horizon curriculum: the schedule's closed form, its sampling under jit,
the config's checks, and resuming a run with a curriculum that extends it."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training import checkpoint, tracking, trainer
from training.config import ConfigError
from training.lo_system import TruncationSchedule

from cli_helpers import fast_config


def test_longest_is_log_linear_between_knots_and_holds_outside():
  s = TruncationSchedule(10, 400, ((10, 100), (20, 400)))
  got = [int(s.longest(t)) for t in (0, 10, 15, 20, 1000)]
  assert got == [100, 100, round(math.sqrt(100 * 400)), 400, 400]
  assert int(TruncationSchedule(10, 400).longest(7)) == 400  # no curriculum: max_length


def test_sample_without_curriculum_is_the_log_uniform_reference():
  s = TruncationSchedule(50, 2000)
  for i in range(20):
    key = jax.random.PRNGKey(i)
    u = float(jax.random.uniform(key, (), minval=math.log(50), maxval=math.log(2001)))
    assert int(s.sample(key)) == min(max(math.floor(math.exp(u)), 50), 2000)


@pytest.mark.parametrize("power", [0.0, 2.0, 3.0])
def test_sample_with_power_follows_the_closed_form_cdf(power):
  """Density ∝ x^-power on [L, T+1), floored: P(H <= h) = F(h + 1), F the
  continuous CDF; also under a curriculum (T = the longest length then)."""
  lo, hi = 50, 2000
  keys = jax.random.split(jax.random.PRNGKey(3), 20000)
  for s, top in ((TruncationSchedule(lo, hi, power=power), hi),
                 (TruncationSchedule(lo, hi, ((0, 400), (10, 2000)), power=power), 400)):
    h = np.asarray(jax.jit(jax.vmap(lambda k: s.sample(k, 0)))(keys))
    assert h.min() >= lo and h.max() <= top
    a = 1.0 - power
    cdf = lambda x: (x**a - lo**a) / ((top + 1) ** a - lo**a)
    for q in (60, 100, 200, 300, top // 2):
      assert abs(np.mean(h <= q) - cdf(q + 1)) < 0.015, (power, top, q)


def test_power_2_spreads_inner_steps_log_uniformly():
  """The inner steps spent in episodes of 50-300 (length x count) equal those of
  300-1800 under power 2 (log-uniform share), against (300-50)/1950 at power 1."""
  keys = jax.random.split(jax.random.PRNGKey(4), 40000)
  share = {}
  for power in (1.0, 2.0):
    s = TruncationSchedule(50, 2000, power=power)
    h = np.asarray(jax.vmap(s.sample)(keys)).astype(np.float64)
    share[power] = h[h < 300].sum() / h.sum()
  assert abs(share[1.0] - 250 / 1951) < 0.02
  assert abs(share[2.0] - math.log(300 / 50) / math.log(2001 / 50)) < 0.03
  with pytest.raises(ValueError, match="power must be"):
    TruncationSchedule(50, 2000, power=-1.0)
  with pytest.raises(ConfigError, match="horizon_power"):
    fast_config(horizon_power=float("nan"))


def test_samples_follow_the_curriculum_inside_jit():
  s = TruncationSchedule(10, 400, ((100, 40), (200, 400)))
  keys = jax.random.split(jax.random.PRNGKey(0), 4000)
  draw = jax.jit(lambda step: jax.vmap(lambda k: s.sample(k, step))(keys))
  early, mid, late = (np.asarray(draw(jnp.int32(t))) for t in (0, 150, 300))
  assert early.min() >= 10 and early.max() == 40       # before the first knot: 40
  assert mid.max() == round(math.sqrt(40 * 400))         # log-midway: 126
  assert late.max() == 400 and late.min() >= 10
  assert np.median(late) > np.median(early)


@pytest.mark.parametrize("spec, match", [
    ("abc", "not STEP:HORIZON"),
    ("0:10,5", "not STEP:HORIZON"),
    ("0:10,10:30", "must end at max_horizon"),
    ("10:10,5:20", "increasing outer steps"),
    ("0:5,10:20", r"lengths in \[10, 20\]"),
    ("-1:20", "STEP >= 0"),
])
def test_bad_curriculum_is_a_config_error(spec, match):
  with pytest.raises(ConfigError, match=match) as e:
    fast_config(horizon_curriculum=spec)
  assert "horizon_curriculum" in str(e.value)


def test_resume_with_a_curriculum_that_extends_the_run(tmp_path):
  workdir = str(tmp_path / "run")
  first = trainer.run(fast_config(outer_steps=4), workdir, stop_after=2, progress=False)
  assert int(first.step) == 2
  # Grows from step 0: the past 2 steps would have drawn longer horizons.
  with pytest.raises(checkpoint.WorkdirError, match="max_horizon: workdir has 20"):
    trainer.run(fast_config(outer_steps=4, max_horizon=40, horizon_curriculum="0:20,4:40"),
                workdir, progress=False)
  extended = fast_config(outer_steps=4, max_horizon=40, horizon_curriculum="2:20,4:40")
  final = trainer.run(extended, workdir, progress=False)
  assert int(final.step) == 4
  records = tracking.read_metrics(workdir)
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  # The traced outer step sets the horizons: no recompiles after the first step.
  assert records[2]["compiles"] == records[3]["compiles"]
  assert checkpoint.read_config(workdir).horizon_curriculum == "2:20,4:40"
