#!/usr/bin/env python
"""Meta-train a learned optimizer.

    python scripts/meta_train.py --preset tiny --workdir runs/tiny
    python scripts/meta_train.py --preset mulo-m-es-single --workdir runs/m --num_pairs 16

Every field of ``training.config.MetaTrainConfig`` is a flag (``--help`` lists
them). Re-running the same command on the same workdir resumes from the last
checkpoint; SIGTERM / Ctrl-C checkpoint before exiting. After training, the
learned optimizer is exported to ``WORKDIR/export`` in the format that
``lopt.load_pretrained`` reads, and its untrained θ to ``WORKDIR/export_init``
(evaluate both to see what meta-training bought).

Multi-host: launch one process per host with JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID set (or under srun / mpirun); see
``training.sharding.maybe_initialize_distributed``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training import config as config_lib  # noqa: E402


def _parse_bool(text: str) -> bool:
  if text.lower() in ("1", "true", "yes", "on"):
    return True
  if text.lower() in ("0", "false", "no", "off"):
    return False
  raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _field_type(field: dataclasses.Field):
  hint = typing.get_type_hints(config_lib.MetaTrainConfig)[field.name]
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  base = args[0] if args else hint
  if base is bool:
    return _parse_bool
  optional = type(None) in typing.get_args(hint)
  if optional:
    return lambda s: None if s.lower() == "none" else base(s)
  return base


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--preset", required=True,
                      help="one of: " + ", ".join(config_lib.preset_names()))
  parser.add_argument("--workdir", required=True, help="checkpoints, metrics, export")
  parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
  overrides = parser.add_argument_group("config overrides")
  for field in dataclasses.fields(config_lib.MetaTrainConfig):
    overrides.add_argument(f"--{field.name}", type=_field_type(field), default=None,
                           help=f"default: {field.default!r}")
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  fields = {f.name for f in dataclasses.fields(config_lib.MetaTrainConfig)}
  overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
  try:
    config = config_lib.get_preset(args.preset, **overrides)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  from training import export, trainer
  state = trainer.run(config, args.workdir, progress=not args.no_progress)
  if int(state.step) >= config.outer_steps:
    path = export.export_workdir(args.workdir)
    init_path = export.export_workdir(args.workdir, initial=True)
    print(f"Exported the learned optimizer to {path} (its untrained θ to {init_path})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
