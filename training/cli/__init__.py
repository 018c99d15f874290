"""The console scripts' logic (pyproject.toml's ``[project.scripts]``): lopt-meta-train,
lopt-evaluate, lopt-screen, lopt-ship, lopt-bench-meta. ``scripts/*.py`` run the
same commands. Shared here: how a bad flag or input is reported."""

import sys

EXIT_BAD_INPUT = 2


def one_line(error: BaseException) -> str:
  return " ".join(str(error).split())


def nonempty(text: str) -> str:
  """An argparse type: any non-blank string."""
  if not text.strip():
    import argparse
    raise argparse.ArgumentTypeError("expected a non-empty value")
  return text


def regex(text: str) -> str:
  """An argparse type: a valid regular expression (``--tasks``)."""
  import argparse
  import re
  try:
    re.compile(text)
  except re.error as e:
    raise argparse.ArgumentTypeError(f"invalid regular expression {text!r}: {e}") from None
  return text


class OneLineErrors:
  """An ArgumentParser mixin: errors come out as one line (argparse's default
  prints the long usage first) with exit status ``EXIT_BAD_INPUT``."""

  def error(self, message):
    self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def error_status(error: BaseException) -> int:
  """A bad input or a disk failure (``lopt.diskio``) as one line on stderr, and its
  exit status; an OSError the disk did not cause is raised again."""
  from lopt import diskio
  failure = diskio.io_failure(error)
  if failure is None and not isinstance(error, (ValueError, FloatingPointError)):
    raise error
  print(f"error: {failure[1] if failure else one_line(error)}", file=sys.stderr, flush=True)
  return failure[0] if failure else EXIT_BAD_INPUT
