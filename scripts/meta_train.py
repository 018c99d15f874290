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

Exit status: 0 finished (and exported); 2 bad input (a flag, the workdir, a
recipe that differs from the workdir's, unreadable checkpoints), reported as
one line; 75 stopped by SIGTERM / Ctrl-C before --outer_steps, with a
checkpoint (re-run the same command to resume); 130 a second Ctrl-C (stopped at
once, without a checkpoint); 1 an unexpected error (with its traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training import config as config_lib  # noqa: E402


EXIT_BAD_INPUT = 2
EXIT_PREEMPTED = 75   # = training.trainer.EXIT_PREEMPTED (EX_TEMPFAIL: re-run to resume)
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
  """Errors come out as one line (argparse's default prints the long usage first)."""

  def error(self, message):
    self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _parse_bool(text: str) -> bool:
  if text.lower() in ("1", "true", "yes", "on"):
    return True
  if text.lower() in ("0", "false", "no", "off"):
    return False
  raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_int(text: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _parse_float(text: str) -> float:
  try:
    return float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _parse_str(text: str) -> str:
  if not text.strip():
    raise argparse.ArgumentTypeError("expected a non-empty value")
  return text


_PARSERS = {bool: _parse_bool, int: _parse_int, float: _parse_float, str: _parse_str}


def _field_type(field: dataclasses.Field):
  hint = typing.get_type_hints(config_lib.MetaTrainConfig)[field.name]
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  base = _PARSERS.get(args[0] if args else hint, _parse_str)
  if type(None) not in typing.get_args(hint):
    return base

  def optional(text: str):
    return None if text.strip().lower() == "none" else base(text)

  return optional


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="meta_train.py", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--preset", required=True, type=_parse_str,
                      help="one of: " + ", ".join(config_lib.preset_names()))
  parser.add_argument("--workdir", required=True, help="checkpoints, metrics, export")
  parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
  overrides = parser.add_argument_group("config overrides")
  for field in dataclasses.fields(config_lib.MetaTrainConfig):
    hint = typing.get_type_hints(config_lib.MetaTrainConfig)[field.name]
    overrides.add_argument(f"--{field.name}", type=_field_type(field), default=None,
                           help=f"default: {field.default!r}"
                           + (" (none for None)" if type(None) in typing.get_args(hint) else ""))
  return parser


def _one_line(error: BaseException) -> str:
  return " ".join(str(error).split())


def _build_config(args: argparse.Namespace):
  """The validated config; raises ValueError naming the flag."""
  fields = {f.name for f in dataclasses.fields(config_lib.MetaTrainConfig)}
  overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
  try:
    config = config_lib.get_preset(args.preset, **overrides)
  except config_lib.ConfigError as e:
    raise ValueError(f"argument --{e.field}: {_one_line(e)}") from None
  except ValueError as e:  # an unknown preset
    raise ValueError(f"argument --preset: {_one_line(e)}") from None
  import meta_tasks
  if config.distribution not in meta_tasks.distribution_names():
    raise ValueError(f"argument --distribution: unknown distribution {config.distribution!r}; "
                     f"valid names: {', '.join(meta_tasks.distribution_names())}.")
  from training import trainer
  try:
    trainer.make_lopt(config)  # the LO's own checks (e.g. adam_init needs raw_ratios)
  except ValueError as e:
    raise ValueError(f"the learned-optimizer flags do not fit together: {_one_line(e)}") from None
  return config


def main(argv=None) -> int:
  """Run the command line; returns the exit status (see the module docstring)."""
  parser = build_parser()
  args = parser.parse_args(argv)
  prog = parser.prog
  try:
    from training import sharding
    sharding.maybe_initialize_distributed()  # before any other JAX call
    config = _build_config(args)
    from training import checkpoint, export, trainer
    checkpoint.check_workdir(args.workdir)
    state = trainer.run(config, args.workdir, progress=not args.no_progress)
    step = int(state.step)
    if step < config.outer_steps:
      print(f"Stopped at outer step {step} of {config.outer_steps} with a checkpoint; "
            "re-run the same command to resume.", flush=True)
      return EXIT_PREEMPTED
    import jax
    if jax.process_count() == 1:
      path = export.export_workdir(args.workdir)
      init_path = export.export_workdir(args.workdir, initial=True)
    elif jax.process_index() == 0:  # several processes: one exports for all
      path, init_path = export.export_in_subprocess(args.workdir)
    else:
      return 0
    print(f"Exported the learned optimizer to {path} (its untrained θ to {init_path})")
  except (ValueError, FloatingPointError) as e:
    print(f"error: {_one_line(e)}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT
  except KeyboardInterrupt:
    print(f"{prog}: interrupted (no checkpoint of the steps since the last one).",
          file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED
  return 0


if __name__ == "__main__":
  sys.exit(main())
