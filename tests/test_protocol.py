"""The learned-optimizer protocol (lopt.protocol) and the config records."""

import jax
import pytest

import lopt
from lopt import protocol


@pytest.mark.parametrize("lo", [lopt.MLPLOpt(), lopt.forms.robust(), lopt.VeLOpt(mup=True)],
                         ids=["reference", "robust", "velo"])
def test_learned_optimizers_implement_the_protocol_and_round_trip_their_record(lo):
  assert isinstance(lo, protocol.LearnedOptimizer)
  name = type(lo).__name__
  assert protocol.architectures()[name] is type(lo)
  assert protocol.from_record(name, lo.to_record()) == lo
  lo.check_theta(lo.init(jax.random.PRNGKey(0)))


def test_unknown_architecture_and_fields_are_named():
  with pytest.raises(ValueError, match="unknown architecture 'Nope'"):
    protocol.from_record("Nope", {})
  with pytest.raises(ValueError, match=r"config fields \['wings'\] are not understood"):
    protocol.from_record("VeLOpt", {"wings": 2})


def test_check_value_accepts_any_member_of_a_union_and_explains_with_the_first():
  """``float | tuple`` (TensorAdaptive's bound): a number or a tuple passes; a
  string fails with the first member's message."""
  fail = lambda path, msg: ValueError(f"{path} {msg}")
  protocol.check_value(10.0, float | tuple, "bound", fail)
  protocol.check_value((10.0, 100.0), float | tuple, "bound", fail)
  protocol.check_value(None, float | None, "bound", fail)
  with pytest.raises(ValueError, match="bound must be a number, got 'x'"):
    protocol.check_value("x", float | tuple, "bound", fail)
