"""Trustworthy files: atomic writes, whole-directory swaps, integrity records,
and one-line reports of I/O failures.

* ``write_atomic(path, data)``: a temporary sibling, fsync, rename, fsync of
  the directory. A reader (or a kill at any instant) sees the old file or the
  new one, never a mix.
* ``replace_dir(staging, final)``: ``final`` becomes ``staging`` in one step
  (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, with the old
  directory kept as ``.NAME.previous`` until the new one is in place, which
  ``recover_dir`` puts back after a kill between the two).
* ``write_record(directory)`` / ``verify_record(directory)``: ``integrity.json``,
  the SHA-256 of every file of a pretrained directory (``metadata.json`` and
  ``theta/``). A pretrained LO whose files differ from their record is refused.
  After a deliberate edit of ``metadata.json``, re-seal it with
  ``python -m lopt.diskio seal DIR``.
* ``io_failure(error)``: (exit status, one line) for an error caused by the
  disk (full, file-size limit, read-only, permission denied, other I/O), found
  in an exception chain or in the text of an orbax / tensorstore error.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Iterator

RECORD = "integrity.json"
RECORD_FORMAT = "lopt-integrity"
RECORD_VERSION = 1

# ------------------------------------------------------------------ exit status
# Exit status of the command-line tools for a failure of the disk (README:
# "Exit status"). 2 (bad input), 75 (preempted) and 130 (interrupted) are the
# scripts' own.
EXIT_READ_ONLY = 73       # EROFS: a read-only file system (sysexits EX_CANTCREAT)
EXIT_IO_ERROR = 74        # EIO and any other I/O error (sysexits EX_IOERR)
EXIT_PERMISSION = 77      # EACCES / EPERM: permission denied (sysexits EX_NOPERM)
EXIT_DISK_FULL = 80       # ENOSPC / EDQUOT: no space left, or quota exceeded
EXIT_FILE_TOO_LARGE = 81  # EFBIG: a file-size limit (ulimit -f) or the file system's

_BY_ERRNO = {
    errno.EROFS: (EXIT_READ_ONLY, "read-only file system"),
    errno.EACCES: (EXIT_PERMISSION, "permission denied"),
    errno.EPERM: (EXIT_PERMISSION, "permission denied"),
    errno.ENOSPC: (EXIT_DISK_FULL, "no space left on device"),
    errno.EDQUOT: (EXIT_DISK_FULL, "disk quota exceeded"),
    errno.EFBIG: (EXIT_FILE_TOO_LARGE, "file too large (a file-size limit, e.g. ulimit -f)"),
    errno.EIO: (EXIT_IO_ERROR, "input/output error"),
}
# tensorstore / orbax report the OS error in their message text.
_TEXT = [(re.compile(p, re.I), e) for p, e in (
    (r"read-only file system", errno.EROFS), (r"permission denied", errno.EACCES),
    (r"operation not permitted", errno.EPERM), (r"no space left on device", errno.ENOSPC),
    (r"disk quota exceeded", errno.EDQUOT), (r"file too large", errno.EFBIG),
    (r"input/output error", errno.EIO))]
_OS_CODE = re.compile(r"os_error_code='?(\d+)")


class DiskError(OSError):
  """A write or read failed because of the disk; ``exit_code`` says which kind."""

  def __init__(self, message: str, exit_code: int = EXIT_IO_ERROR):
    super().__init__(message)
    self.exit_code = exit_code


def _chain(error: BaseException) -> Iterator[BaseException]:
  seen, todo = set(), [error]
  while todo:
    e = todo.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    yield e
    todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]


def io_failure(error: BaseException, what: str = "") -> tuple[int, str] | None:
  """(exit status, one-line message) if ``error`` was caused by the disk, else None."""
  for e in _chain(error):
    if isinstance(e, DiskError):
      return e.exit_code, " ".join(str(e).split())
    # The OS error's errno, else the one orbax / tensorstore name, else their words.
    m = _OS_CODE.search(str(e))
    found = [e.errno if isinstance(e, OSError) else None, m and int(m.group(1))]
    found += [c for pattern, c in _TEXT if pattern.search(str(e))]
    code = next((c for c in found if c in _BY_ERRNO), None)
    if code is not None:
      status, kind = _BY_ERRNO[code]
      if not what and e is error and not isinstance(e, OSError):
        text = " ".join(str(e).split())  # a message of ours that wraps the OS error
        return status, f"{kind}: {text if len(text) <= 400 else text[:397] + '...'}"
      where = getattr(e, "filename", None) or _path_in(str(e))
      return status, " ".join(
          f"{what + ': ' if what else ''}{kind}{f' ({where})' if where else ''}".split())
  return None


def as_disk_error(error: BaseException, what: str) -> BaseException:
  """A ``DiskError`` (one line, its exit status) if the disk caused ``error``; else ``error``."""
  failure = io_failure(error, what)
  return error if failure is None else DiskError(failure[1], failure[0])


def _path_in(text: str) -> str | None:
  m = re.search(r'"(/[^"]+)"', text) or re.search(r"'(/[^']+)'", text)
  return m.group(1) if m else None


# ------------------------------------------------------------------ atomic writes
def _fsync(path: str | os.PathLike) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def fsync_dir(directory: str | os.PathLike) -> None:
  with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
    _fsync(directory)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
  """Write ``path`` through a temporary sibling: old or new content, never a mix.
  A failure the disk caused is a ``DiskError`` "cannot write PATH: ..." (one line)."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
  payload = data.encode() if isinstance(data, str) else data
  try:
    with open(tmp, "wb") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    if isinstance(e, OSError):
      raise as_disk_error(e, f"cannot write {path}") from None
    raise
  fsync_dir(directory)


def fsync_tree(root: str | os.PathLike) -> None:
  """fsync every file and directory under ``root`` (before it is renamed into place)."""
  for dirpath, _, files in os.walk(root):
    for name in files:
      _fsync(os.path.join(dirpath, name))
    fsync_dir(dirpath)


_RENAME_EXCHANGE = 2


def _exchange(a: str, b: str) -> bool:
  """Atomically swap two paths (Linux renameat2). False if not supported here."""
  if not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    renameat2 = libc.renameat2
  except (OSError, AttributeError):
    return False
  at_fdcwd = -100
  renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                        ctypes.c_uint]
  if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
    return True
  err = ctypes.get_errno()
  if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
    return False  # the file system cannot exchange: the two-rename fallback
  raise OSError(err, os.strerror(err), b)


def previous_dir(final: str | os.PathLike) -> Path:
  final = Path(final)
  return final.parent / f".{final.name}.previous"


def recover_dir(final: str | os.PathLike) -> None:
  """After a kill between the two renames of the fallback swap: put the old
  directory back (a no-op otherwise)."""
  final, previous = Path(final), previous_dir(final)
  if not final.exists() and previous.is_dir():
    os.replace(previous, final)


def replace_dir(staging: str | os.PathLike, final: str | os.PathLike) -> None:
  """Make ``final`` the (fsynced) directory ``staging``, atomically; the old
  ``final`` is deleted afterwards. ``staging`` must be a sibling of ``final``."""
  staging, final = os.fspath(staging), os.fspath(final)
  fsync_tree(staging)
  parent = os.path.dirname(os.path.abspath(final))
  if not os.path.exists(final):
    os.replace(staging, final)
  elif _exchange(staging, final):
    shutil.rmtree(staging, ignore_errors=True)  # now the old content
  else:
    previous = previous_dir(final)
    shutil.rmtree(previous, ignore_errors=True)
    os.replace(final, previous)
    os.replace(staging, final)
    shutil.rmtree(previous, ignore_errors=True)
  fsync_dir(parent)


def check_writable(directory: str | os.PathLike) -> None:
  """``DiskError`` if files cannot be created in ``directory``: no write
  permission bit (a write-protected folder is respected even by root), or a
  probe file fails (read-only file system, permission denied, disk full)."""
  import stat
  import tempfile
  directory = os.fspath(directory)
  mode = stat.S_IMODE(os.stat(directory).st_mode)
  if not mode & 0o222:
    raise DiskError(f"{directory} is write-protected (mode {mode:o}); make it writable "
                    "or choose another directory.", EXIT_PERMISSION)
  try:
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
      pass
  except OSError as e:
    raise as_disk_error(e, f"cannot write in {directory}") from None


def staging_dir(final: str | os.PathLike) -> Path:
  """A fresh temporary sibling of ``final``; dead processes' leftovers are removed."""
  final = Path(final)
  remove_stale_temps(final.parent)
  path = final.parent / f".{final.name}.tmp-{os.getpid()}"
  shutil.rmtree(path, ignore_errors=True)
  path.mkdir()
  return path


def remove_stale_temps(directory: str | os.PathLike) -> list[str]:
  """Remove the temporary siblings (``.NAME.tmp-PID``, files or folders) that a
  killed writer left in ``directory``; those of live processes are kept."""
  removed = []
  for path in Path(directory).glob(".*.tmp-*"):
    pid = path.name.rsplit("-", 1)[-1]
    # Our own leftovers (an earlier failed attempt of this process) are kept too.
    if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
      if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
      else:
        with contextlib.suppress(OSError):
          path.unlink()
      removed.append(str(path))
  return removed


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


# ------------------------------------------------------------------ integrity records
def sha256_file(path: str | os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _files(directory: Path, covered: list[str] | tuple[str, ...]) -> list[str]:
  """The files of ``directory`` (relative, "/"-separated) that are or lie in ``covered``."""
  rels = [os.path.relpath(os.path.join(dirpath, name), directory).replace(os.sep, "/")
          for dirpath, _, files in os.walk(directory) for name in files]
  return sorted(rel for rel in rels if rel != RECORD and any(
      rel == c or rel.startswith(c.rstrip("/") + "/") for c in covered))


def record_of(directory: str | os.PathLike, covered: tuple[str, ...]) -> dict[str, Any]:
  """The integrity record of the ``covered`` files and folders of ``directory``."""
  directory = Path(directory)
  return {"format": RECORD_FORMAT, "format_version": RECORD_VERSION, "algorithm": "sha256",
          "covers": list(covered),
          "files": {name: sha256_file(directory / name) for name in _files(directory, covered)}}


def write_record(directory: str | os.PathLike,
                 covered: tuple[str, ...] = ("metadata.json", "theta/")) -> Path:
  """Write ``directory/integrity.json`` (atomically) for the files as they are now."""
  directory = Path(directory)
  path = directory / RECORD
  write_atomic(path, json.dumps(record_of(directory, covered), indent=1, sort_keys=True) + "\n")
  return path


class IntegrityError(ValueError):
  """A file differs from its integrity record (one-line message naming the file)."""


def verify_record(directory: str | os.PathLike, required: bool = False) -> bool:
  """Check ``directory``'s files against ``integrity.json``: every recorded file
  exists with the recorded SHA-256, and no file the record does not list is in
  a covered folder. Returns False if there is no record (an ``IntegrityError``
  if ``required``); raises ``IntegrityError`` naming the first bad file."""
  directory = Path(directory)
  path = directory / RECORD
  if not path.is_file():
    if required:
      raise IntegrityError(f"{path} is missing: the files of {directory} cannot be verified.")
    return False
  try:
    record = json.loads(path.read_text())
    files, covered = record["files"], record["covers"]
    ok = (isinstance(record, dict) and record.get("format") == RECORD_FORMAT
          and record.get("algorithm") == "sha256" and isinstance(files, dict)
          and isinstance(covered, list) and all(isinstance(c, str) for c in covered)
          and all(isinstance(v, str) for v in files.values()))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise IntegrityError(f"{path} is unreadable ({type(e).__name__}: {e}).") from None
  if not ok:
    raise IntegrityError(f"{path} is not a valid integrity record.")
  present = set(_files(directory, covered))
  for name in sorted(files):
    target = directory / name
    if name not in present:
      raise IntegrityError(f"{target} is missing (listed in {path}).")
    if sha256_file(target) != files[name]:
      raise IntegrityError(f"{target} does not match its SHA-256 in {path}: the file was "
                           "damaged or edited after it was written.")
  extra = sorted(present - set(files))
  if extra:
    raise IntegrityError(f"{directory / extra[0]} is not listed in {path}: the files of "
                         f"{directory} were changed after they were written.")
  return True


# ------------------------------------------------------------------ quiet orbax
class _DropOrbax(logging.Filter):
  """Drops orbax's log records (their tracebacks, from background threads) while
  installed; the caller reports the failure itself, in one line."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "orbax" not in (record.pathname or "")


def _orbax_log_filters() -> tuple[logging.Filter, list]:
  loggers = [logging.getLogger("absl"), logging.getLogger()]
  return _DropOrbax(), loggers + [h for lg in loggers for h in lg.handlers]  # loggers, handlers


@contextlib.contextmanager
def quiet_orbax() -> Iterator[None]:
  """Silence orbax's logging inside the block (its failures are raised to us anyway)."""
  flt, filtered = _orbax_log_filters()
  for x in filtered:
    x.addFilter(flt)
  try:
    yield
  finally:
    for x in filtered:
      x.removeFilter(flt)


def quiet_orbax_from_now() -> None:
  """Silence orbax's logging for the rest of the process: after a failed save,
  its background threads may still log that failure (a metadata write into
  the half-written step just removed) once ``quiet_orbax``'s block has
  exited, while the caller reports it in one line."""
  flt, filtered = _orbax_log_filters()
  for x in filtered:
    x.addFilter(flt)


class _DropAbandonedCheckpointTasks(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    if "never retrieved" not in str(record.msg):
      return True
    exc = record.exc_info[1] if record.exc_info else None
    frames = traceback.walk_tb(getattr(exc, "__traceback__", None))
    text = (f"{record.getMessage()} {exc!r} {getattr(exc, '__module__', '')} "
            + " ".join(f.f_code.co_filename for f, _ in frames))
    return not any(k in text for k in ("orbax", "tensorstore", "OCDBT"))


_hook_lock = threading.Lock()
_hook_installed = False


def silence_closed_event_loops() -> None:
  """After orbax gives up on a corrupt or unwritable checkpoint, tensorstore
  callbacks may still arrive for the asyncio loop orbax already closed; Python
  prints each as an ignored ``RuntimeError: Event loop is closed`` traceback.
  This drops exactly those (nothing else) from ``sys.unraisablehook``."""
  global _hook_installed
  with _hook_lock:
    if _hook_installed:
      return
    previous = sys.unraisablehook

    def hook(unraisable):
      e = unraisable.exc_value
      if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
        return
      previous(unraisable)

    sys.unraisablehook = hook
    # The same abandoned reads also surface later, when asyncio garbage-collects
    # their tasks, as an "ERROR:asyncio:Task exception was never retrieved"
    # traceback; drop those whose exception comes from orbax/tensorstore.
    logging.getLogger("asyncio").addFilter(_DropAbandonedCheckpointTasks())
    _hook_installed = True


def main(argv: list[str] | None = None) -> int:
  """``python -m lopt.diskio seal DIR...`` (re)writes the integrity record of
  pretrained directories; ``verify DIR...`` checks them."""
  import argparse
  parser = argparse.ArgumentParser(prog="python -m lopt.diskio")
  parser.add_argument("action", choices=["seal", "verify"])
  parser.add_argument("directories", nargs="+")
  args = parser.parse_args(argv)
  for d in args.directories:
    if not (Path(d) / "metadata.json").is_file():
      print(f"error: {d} holds no metadata.json", file=sys.stderr)
      return 2
    if args.action == "seal":
      print(write_record(d))
    else:
      try:
        verify_record(d, required=True)
      except IntegrityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
      print(f"{d}: ok")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
