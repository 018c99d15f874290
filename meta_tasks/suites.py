"""Named held-out evaluation suites. Never meta-train on these.

Each entry is ``SuiteEntry(task, num_steps, tuning_task)``; ``tuning_task`` is
the meta-training-size variant (base width/depth) on which baselines' learning
rates are tuned before transfer. The reference points are the ``mulo-s``
config (MLP w128 d3 b128 on ImageNet 32x32, horizons up to
``META_HORIZON`` = 1000 steps) and, for the ``-cpu`` suites, the ``tiny``
config (MLP w32 d3 b128 on digits, horizons up to ``META_HORIZON_CPU`` = 1000,
the longest horizon of the ``*-cpu`` meta-training presets).

Held out from what: the GPU suites from every distribution; the ``-cpu``
suites from ``tiny*`` and ``*-cpu`` (digits widths up to 128, hence
``heldout-width-cpu`` at 512 and 2048). The offline ``*-digits`` stand-ins reach
width 1024, so for them only the 2048 entry of ``heldout-width-cpu`` is out of
distribution.

tfds datasets each suite needs (prepare with ``tfds build NAME
--file_format=array_record``; the ``-cpu`` suites and ``smoke`` need none):

====================  ======================================================
``heldout-width``     imagenet_resized/32x32 (widths 512, 2048; base 128)
``heldout-width-m``   imagenet_resized/32x32 (widths 4096, 16384; base 1024)
``heldout-depth``     imagenet_resized/32x32 (depth 12; widths 128, 1024)
``heldout-horizon``   imagenet_resized/32x32 (5000 and 25000 steps)
``heldout-arch``      cifar10 (CNN), tiny_shakespeare (transformer LM)
``heldout-data``      mnist, fashion_mnist, cifar10, svhn_cropped
``full``              union of the five above (not ``-m``)
====================  ======================================================
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from meta_tasks.base import SuiteEntry
from meta_tasks.families import IMAGENET32
from meta_tasks.tasks import ImageCNNTask, ImageMLPTask, TransformerLMTask
from meta_tasks.user_tasks import PlainCNNTask, PlainMLPTask, PlainTransformerLMTask

META_HORIZON = 1000
# The *-cpu meta-training presets draw horizons up to 1000 steps, so the held-out
# horizons are 5x and 25x that (5000 and 25000 steps).
META_HORIZON_CPU = 1000


def _scaled(base, num_steps: int, tuning=None, **changes) -> SuiteEntry:
  """``base`` with ``changes`` applied, tuned on ``tuning`` (default: ``base``)."""
  return SuiteEntry(dataclasses.replace(base, **changes), num_steps,
                    base if tuning is None else tuning)


def _same(task, num_steps: int) -> SuiteEntry:
  return SuiteEntry(task, num_steps, task)


def _gpu_suites(dd: str | None) -> dict[str, list[SuiteEntry]]:
  base = ImageMLPTask(dataset=IMAGENET32, image_size=32, width=128, depth=3, batch_size=128,
                      data_dir=dd)
  base_m = dataclasses.replace(base, width=1024, batch_size=4096)
  cnn = ImageCNNTask(dataset="cifar10", width=16, depth=3, batch_size=128, data_dir=dd)
  lm = TransformerLMTask(dataset="tiny_shakespeare", seq_len=128, width=64, depth=2,
                         num_heads=4, batch_size=64, data_dir=dd)
  suites = {
      "heldout-width": [_scaled(base, META_HORIZON, width=w) for w in (512, 2048)],
      "heldout-width-m": [_scaled(base_m, META_HORIZON, width=w) for w in (4096, 16384)],
      "heldout-depth": [_scaled(dataclasses.replace(base, width=w), META_HORIZON, depth=12)
                        for w in (128, 1024)],
      "heldout-horizon": [_same(base, n) for n in (5 * META_HORIZON, 25 * META_HORIZON)],
      "heldout-arch": [_scaled(cnn, META_HORIZON, width=64),
                       _scaled(lm, META_HORIZON, width=256)],
      "heldout-data": [_same(dataclasses.replace(base, dataset=ds, image_size=None), META_HORIZON)
                       for ds in ("mnist", "fashion_mnist", "cifar10", "svhn_cropped")],
  }
  suites["full"] = [e for k in ("heldout-width", "heldout-depth", "heldout-horizon",
                                "heldout-arch", "heldout-data") for e in suites[k]]
  return suites


def _cpu_suites(dd: str | None) -> dict[str, list[SuiteEntry]]:
  del dd  # embedded data only
  tiny = ImageMLPTask(dataset="digits", width=32, depth=3, batch_size=128)
  cnn = ImageCNNTask(dataset="digits", width=8, depth=2, batch_size=128)
  lm = TransformerLMTask(dataset="pydocs", seq_len=32, width=16, depth=2, num_heads=4,
                         batch_size=16)
  h = META_HORIZON_CPU
  suites = {
      "smoke": [_same(tiny, 150), _same(dataclasses.replace(tiny, width=64, batch_size=64), 200)],
      # x4 and x16 of the widest CPU meta-training width (128, mulo-m-cpu); x16, x64 of tiny's.
      "heldout-width-cpu": [_scaled(tiny, 300, width=w) for w in (512, 2048)],
      "heldout-depth-cpu": [_scaled(tiny, 300, depth=12)],
      "heldout-horizon-cpu": [_same(tiny, n) for n in (5 * h, 25 * h)],
      "heldout-arch-cpu": [_scaled(cnn, 300, width=32), _scaled(lm, 300, width=64)],
      "heldout-data-cpu": [_same(dataclasses.replace(tiny, dataset="teacher"), 300),
                           _same(dataclasses.replace(tiny, image_size=16), 300)],
  }
  suites["full-cpu"] = [e for k in ("heldout-width-cpu", "heldout-depth-cpu",
                                    "heldout-horizon-cpu", "heldout-arch-cpu",
                                    "heldout-data-cpu") for e in suites[k]]
  return suites


def _user_suites(dd: str | None) -> dict[str, list[SuiteEntry]]:
  """Models written the way users write them (plain flax, default initializers,
  plain readouts, flax attention), on embedded data, CPU-sized. Baselines are
  tuned on the task itself, as a user tunes on their own model.

  ``screen-user-cpu`` is for choosing a recipe; ``heldout-user-cpu`` is never
  looked at while choosing one. They share model families, not configs or data
  (wine vs breast cancer; pydocs windows of 32 vs 64 bytes at other widths).
  """
  del dd
  screen = [
      _same(PlainMLPTask(dataset="digits", width=64, batch_size=64), 1000),
      _same(PlainMLPTask(dataset="wine", width=64, batch_size=32), 300),
      _same(PlainCNNTask(dataset="digits", augment=True, width=16), 500),
      _same(PlainTransformerLMTask(seq_len=32, width=32, depth=1, num_heads=2,
                                   batch_size=16), 500),
      _same(PlainMLPTask(dataset="teacher", width=64, batch_size=64), 1000),
      # Small data trained long: 142 rows, memorized within ~200 steps,
      # then 2800 more where only restraint keeps the test loss down.
      _same(PlainMLPTask(dataset="wine", width=128, batch_size=16), 3000),
  ]
  return {
      "screen-user-cpu": screen,
      # The screen plus one entry per axis along which users' models differ
      # from it, each at a config no held-out suite uses. It ranked checkpoints
      # no closer to the held-out suite than the screen does (docs/
      # meta-training-runs.md, "A broader screen"): it is for finding an LO's
      # weak spots, not the default for choosing checkpoints.
      "screen-broad-cpu": screen + [
          _same(PlainMLPTask(dataset="digits", width=512, depth=2, batch_size=32), 1000),
          _same(ImageMLPTask(dataset="teacher", width=512, depth=3, batch_size=64), 500),
          _same(PlainMLPTask(dataset="digits", width=64, depth=6, batch_size=64), 1000),
          _same(PlainMLPTask(dataset="digits", width=128, batch_size=8), 1000),
          # A real noisy small table trained long (353 training rows).
          _same(PlainMLPTask(dataset="diabetes", width=64, batch_size=32), 2000),
          _same(PlainCNNTask(dataset="digits", augment=True, width=48, depth=3, batch_size=64),
                500),
          _same(PlainTransformerLMTask(seq_len=32, width=128, depth=2, num_heads=4,
                                       batch_size=16), 500),
          _same(PlainMLPTask(dataset="teacher", width=64, batch_size=64), 4000),
      ],
      "heldout-user-cpu": [
          _same(PlainMLPTask(dataset="digits", augment=True, width=256), 2000),
          _same(PlainMLPTask(dataset="breast_cancer", width=128, batch_size=64), 500),
          _same(PlainCNNTask(dataset="digits", width=32), 1000),
          _same(PlainTransformerLMTask(seq_len=64, width=64, depth=2, num_heads=4,
                                       batch_size=32), 1000),
          _same(PlainMLPTask(dataset="teacher", width=256, depth=4), 1000),
          # Small data trained long (120 rows, memorized within ~100 steps).
          _same(PlainMLPTask(dataset="iris", width=64, batch_size=16), 3000),
      ],
  }


_BUILDERS: list[Callable[[str | None], dict[str, list[SuiteEntry]]]] = [
    _cpu_suites, _user_suites, _gpu_suites]


def suite_names() -> list[str]:
  return [name for build in _BUILDERS for name in build(None)]


def get_suite(name: str, data_dir: str | None = None) -> list[SuiteEntry]:
  """The named evaluation suite; ``data_dir`` is where tfds data lives."""
  for build in _BUILDERS:
    suites = build(data_dir)
    if name in suites:
      return suites[name]
  raise ValueError(f"Unknown suite {name!r}; valid names: {', '.join(suite_names())}.")
