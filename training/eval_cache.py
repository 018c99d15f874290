"""The baseline cache: tuned baselines' tuning and run results, kept across
invocations of the evaluation (``scripts/evaluate.py --baseline_cache``)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Optional

from lopt import diskio
from training.stats import finite_or_none


class BaselineCache:
  """Tuning and run results of tuned baselines, kept across invocations.

  One JSON file per result, named by a hash of everything that determines it
  (baseline, full task repr, horizon, seeds, LR grid, eval batches, protocol).
  It does not see code changes: delete the folder after changing a task or a
  baseline. Non-finite losses are stored as null and read back as inf.
  """

  def __init__(self, directory: str):
    self.directory = directory

  def _path(self, key: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return os.path.join(self.directory, f"{key['what']}-{digest}.json")

  def load(self, key: dict[str, Any]) -> Optional[dict[str, Any]]:
    path = self._path(key)
    if not os.path.exists(path):
      return None
    with open(path) as f:
      entry = json.load(f)
    if entry.get("key") != key:  # a hash collision or a hand-edited file
      return None
    value = entry["value"]
    for name in ("final_train_loss", "test_loss"):
      if name in value and value[name] is None:
        value[name] = math.inf
    return value

  def store(self, key: dict[str, Any], value: dict[str, Any]) -> None:
    os.makedirs(self.directory, exist_ok=True)
    record = json.dumps({"key": key, "value": finite_or_none(value)}, allow_nan=False)
    diskio.write_atomic(self._path(key), record)  # a killed run never leaves half a file

