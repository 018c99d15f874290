"""Named forms of the MLP learned optimizer, and the flat (switch) records of
lopt before issue 20.

    lopt.forms.reference()                # the μLO of the paper: MLPLOpt()
    lopt.forms.robust(hidden_size=8)      # the shipped robust form (mulo-r, mulo-s; sp-lo with mup=False)
"""

from __future__ import annotations

import warnings
from typing import Any

from lopt.mlp_lopt import Features, MLPLOpt
from lopt.step_rules import Cosine, GroupBase, LearnedScales, RMSNormalize, WeightDecay


def reference(**fields) -> MLPLOpt:
  """The reference μLO: the network's raw step, no step rules."""
  return MLPLOpt(**fields)


def robust(*, input: float = 0.002, hidden: float = 0.2, weight_decay: float = 0.1,
           learned_scales: bool = True, cosine: bool = True, hidden_size: int = 8,
           adam: bool = True, absolute_time: bool = False, **fields) -> MLPLOpt:
  """Celo2's robust form, as shipped: RMS-normalized step, base steps ``input``
  (input, vector tensors) and ``hidden`` (hidden-like, before 1/fan_in),
  decoupled ``weight_decay``, θ-learned scales and a cosine schedule; θ starts
  as μAdam and reads only the fraction of training. The rule order is the one
  the shipped checkpoints were computed with (bit for bit)."""
  rules = (RMSNormalize(),) + ((WeightDecay(weight_decay),) if weight_decay else ())
  rules += ((LearnedScales(),) if learned_scales else ()) + (GroupBase(input, hidden),)
  rules += (Cosine(),) if cosine else ()
  fields.setdefault("step_mult", input)
  return MLPLOpt(hidden_size=hidden_size, features=Features(adam, absolute_time), step=rules,
                 **fields)


LEGACY_FIELDS = ("raw_ratios", "adam_init", "absolute_time", "lr_schedule", "output_norm",
                 "hidden_step_mult", "weight_decay", "learned_scales")


def is_legacy(record: dict[str, Any]) -> bool:
  return any(k in record for k in LEGACY_FIELDS)


def warn_legacy(record: dict[str, Any]) -> None:
  warnings.warn(
      f"A flat MLPLOpt config (fields {sorted(set(LEGACY_FIELDS) & set(record))}) is the "
      "pre-issue-20 form; it is converted to features + step rules. Re-save it (its "
      "to_record()) to drop this warning.", FutureWarning, stacklevel=4)


def from_flat(record: dict[str, Any]) -> MLPLOpt:
  """An ``MLPLOpt`` from a flat record of lopt before issue 20 (the switches
  raw_ratios, adam_init, absolute_time, lr_schedule, output_norm,
  hidden_step_mult, weight_decay, learned_scales)."""
  r = dict(record)
  legacy = {k: r.pop(k) for k in LEGACY_FIELDS if k in r}
  adam, raw = legacy.get("adam_init", False), legacy.get("raw_ratios", False)
  if raw != adam:
    raise ValueError("raw_ratios without adam_init (or the reverse) is a removed MLPLOpt "
                     "form: features.adam sets both.")
  features = Features(adam, legacy.get("absolute_time", True))
  cosine = legacy.get("lr_schedule", "constant") == "cosine"
  if legacy.get("lr_schedule", "constant") not in ("constant", "cosine"):
    raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {legacy['lr_schedule']!r}.")
  wd = legacy.get("weight_decay", 0.0)
  hidden = legacy.get("hidden_step_mult")
  scales = legacy.get("learned_scales", False)
  if legacy.get("output_norm", False):
    step_mult = r.get("step_mult", 0.01)
    return robust(input=step_mult, hidden=step_mult if hidden is None else hidden,
                  weight_decay=wd, learned_scales=scales, cosine=cosine,
                  hidden_size=r.pop("hidden_size", 32), adam=adam,
                  absolute_time=features.absolute_time, **r)
  if wd or scales or hidden is not None:
    raise ValueError("hidden_step_mult, weight_decay and learned_scales without output_norm "
                     "are a removed MLPLOpt form; use lopt.forms.robust.")
  return MLPLOpt(features=features, step=(Cosine(),) if cosine else (), **r)
