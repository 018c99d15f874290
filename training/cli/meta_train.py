"""Meta-train a learned optimizer (``lopt-meta-train``, or ``python scripts/meta_train.py``).

    lopt-meta-train --preset tiny --workdir runs/tiny
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
once, without a checkpoint); 1 an unexpected error (with its traceback). A
failure of the disk is one line too: 73 read-only file system, 74 other I/O
error, 77 permission denied (or a write-protected folder), 80 disk full or
quota exceeded, 81 file too large (a file-size limit such as ulimit -f); see
``lopt.diskio``. Another run holding the workdir is 2, naming its PID.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import typing

import simple_parsing
from simple_parsing.wrappers.field_wrapper import NestedMode

from training.cli import OneLineErrors, error_status, nonempty, one_line

# training.config imports lopt, which touches a JAX backend: the functions below
# import it, after main() has run the distributed init.
EXIT_PREEMPTED = 75   # = training.trainer.EXIT_PREEMPTED (EX_TEMPFAIL: re-run to resume)
EXIT_INTERRUPTED = 130


class _Parser(OneLineErrors, simple_parsing.ArgumentParser):
  pass


def _optional(base):
  def parse(text: str):
    return None if text.strip().lower() == "none" else base(text)
  parse.__name__ = base.__name__
  return parse


def _flags_class(config: config_lib.MetaTrainConfig) -> type:
  """``MetaTrainConfig``'s fields with ``config``'s values as defaults and ``lo``
  typed as its LO class: simple-parsing makes ``--field`` and ``--lo.<field>`` flags."""
  from training import config as config_lib
  hints = typing.get_type_hints(config_lib.MetaTrainConfig)
  fields = []
  for f in dataclasses.fields(config_lib.MetaTrainConfig):
    hint, default = (type(config.lo) if f.name == "lo" else hints[f.name]), getattr(config, f.name)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    custom = {"help": " "}
    if args and type(None) in typing.get_args(hint):  # --delta_clip none
      custom.update(type=_optional(args[0]), help="none for None", metavar=args[0].__name__,
                    nargs=None)
    elif hint is str:
      custom.update(type=nonempty, metavar="str")
    meta = {} if f.name == "lo" else {"custom_args": custom}
    fields.append((f.name, hint, dataclasses.field(default=default, metadata=meta)))
  return dataclasses.make_dataclass("MetaTrainFlags", fields, frozen=True)


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
  """The parser; its defaults and ``--lo.*`` flags are those of ``preset`` (the
  default config if None or unknown)."""
  from training import config as config_lib
  try:
    config = config_lib.get_preset(preset) if preset else config_lib.MetaTrainConfig()
  except ValueError:
    config = config_lib.MetaTrainConfig()
  parser = _Parser(prog="meta_train.py", description=__doc__, add_config_path_arg=False, nested_mode=NestedMode.WITHOUT_ROOT,
                   argument_generation_mode=simple_parsing.ArgumentGenerationMode.NESTED,
                   add_option_string_dash_variants=simple_parsing.DashVariant.UNDERSCORE)
  parser.add_argument("--preset", required=True, type=nonempty, metavar="NAME",
                      help="one of: " + ", ".join(config_lib.preset_names()))
  parser.add_argument("--workdir", required=True, metavar="DIR",
                      help="checkpoints, metrics, export")
  parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
  parser.add_arguments(_flags_class(config), dest="config")
  parser.print_help(io.StringIO())  # simple-parsing adds the flags lazily: add them now
  return parser


def _parse(argv) -> tuple[argparse.Namespace, config_lib.MetaTrainConfig]:
  """(args, the validated config); raises ValueError naming the flag."""
  from training import config as config_lib
  first = argparse.ArgumentParser(add_help=False)
  first.add_argument("--preset", default=None)
  preset = first.parse_known_args(argv)[0].preset
  given = [a[2:].split("=")[0] for a in (argv if argv is not None else sys.argv[1:])
           if a.startswith("--lo.")]
  try:
    args = build_parser(preset).parse_args(argv)
  except (TypeError, ValueError) as e:  # the LO's own checks, run while parsing
    error = config_lib.lo_error(e, [g[3:] for g in given] or ["?"])
    raise ValueError(f"argument --{error.field}: {one_line(error)}") from None
  try:
    config_lib.get_preset(args.preset)
  except ValueError as e:  # an unknown preset
    raise ValueError(f"argument --preset: {one_line(e)}") from None
  flags = args.config
  try:
    config = config_lib.MetaTrainConfig(**{f.name: getattr(flags, f.name)
                                           for f in dataclasses.fields(flags)})
  except config_lib.ConfigError as e:
    raise ValueError(f"argument --{e.field}: {one_line(e)}") from None
  import meta_tasks
  if config.distribution not in meta_tasks.distribution_names():
    raise ValueError(f"argument --distribution: unknown distribution {config.distribution!r}; "
                     f"valid names: {', '.join(meta_tasks.distribution_names())}.")
  return args, config


def main(argv=None) -> int:
  """Run the command line; returns the exit status (see the module docstring)."""
  prog = "meta_train.py"
  import contextlib
  held = contextlib.ExitStack()  # the workdir lock, across training and export
  try:
    from training import sharding
    sharding.maybe_initialize_distributed()  # before any other JAX call
    args, config = _parse(argv)
    from training import checkpoint, export, trainer
    held.enter_context(checkpoint.workdir_lock(checkpoint.check_workdir(args.workdir)))
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
  except (ValueError, FloatingPointError, OSError) as e:
    return error_status(e)
  except KeyboardInterrupt:
    print(f"{prog}: interrupted (no checkpoint of the steps since the last one).",
          file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED
  finally:
    held.close()
  return 0


def console() -> int:
  """``lopt-meta-train``: ``main()``, and a disk failure ends the process at once."""
  status = main()
  if status in (73, 74, 77, 80, 81):  # a disk failure (lopt.diskio): orbax may still have
    sys.stdout.flush()               # threads waiting on the failed write; they must not
    sys.stderr.flush()               # hold the exit (nor print after the one line)
    os._exit(status)
  return status
