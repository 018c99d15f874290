"""Byte-level text corpora for the LM task, held on device as one uint8 array per split.

Sources:

* ``pydocs`` (embedded, offline): text files shipped with the Python install
  (.py with their docstrings, .txt, .rst, .md from the standard library, then
  site-packages if the stdlib is too small), gathered deterministically: files
  in sorted order, at most 32 KB from each, up to ``max_bytes`` in all. The
  corpus therefore depends on the Python version, not on the machine. If no
  files are readable it falls back to the docstrings of loaded modules.
* tfds text datasets (``TEXT_DATASETS``), read with ``tfds.data_source``.

Batches are random windows of ``seq_len + 1`` bytes gathered inside jit.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meta_tasks.base import check_choice
from meta_tasks import datasets
from meta_tasks.datasets import open_tfds_source, read_records, resolve_data_dir

# name -> (tfds name, train split, held-out split); "pydocs" is embedded.
TEXT_DATASETS: dict[str, tuple[str, str, str] | None] = {
    "pydocs": None,
    "tiny_shakespeare": ("tiny_shakespeare", "train", "test"),
    "lm1b": ("lm1b", "train", "test"),
}
VOCAB_SIZE = 256
DEFAULT_MAX_BYTES = 4_000_000
_SUFFIXES = (".py", ".txt", ".rst", ".md")
_SKIP_DIRS = {"test", "tests", "__pycache__", "site-packages", "idlelib", "turtledemo"}
_PER_FILE_BYTES = 32_768
_MIN_CORPUS_BYTES = 200_000


class TextArrays(NamedTuple):
  train_tokens: jax.Array   # uint8 (N,)
  test_tokens: jax.Array


def _text_files(root: str):
  """Text files under ``root`` in a machine-independent (sorted) order."""
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
    for f in sorted(filenames):
      if f.endswith(_SUFFIXES):
        yield Path(dirpath) / f


def gather_python_docs(max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
  """Deterministic byte corpus from the text files of the Python installation."""
  roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
  parts, total = [], 0
  for root in roots:
    if total >= _MIN_CORPUS_BYTES or not root or not os.path.isdir(root):
      continue
    for path in _text_files(root):
      try:
        chunk = path.read_bytes()[:_PER_FILE_BYTES]
      except OSError:
        continue
      parts.append(chunk)
      total += len(chunk)
      if total >= max_bytes:
        return b"\n".join(parts)[:max_bytes]
  if total < _MIN_CORPUS_BYTES:
    # No readable install tree (e.g. a zipped stdlib): docstrings are always there.
    docs = [m.__doc__ for _, m in sorted(sys.modules.items()) if getattr(m, "__doc__", None)]
    parts.append("\n".join(docs).encode("utf-8", "replace"))
  return b"\n".join(parts)[:max_bytes]


def _tfds_text(name: str, split: str, data_dir: str | None, max_bytes: int) -> bytes:
  source = open_tfds_source(name, split, data_dir)
  parts, total, n = [], 0, len(source)
  for s in range(0, n, 4096):
    for record in read_records(source, s, min(n, s + 4096)):
      text = record["text"]
      parts.append(text if isinstance(text, bytes) else str(text).encode("utf-8"))
      total += len(parts[-1]) + 1
      if total >= max_bytes:
        return b"\n".join(parts)[:max_bytes]
  return b"\n".join(parts)


@functools.lru_cache(maxsize=None)
def load_text(dataset: str = "pydocs", data_dir: str | None = None,
              max_bytes: int = DEFAULT_MAX_BYTES) -> TextArrays:
  """Device byte arrays for ``dataset``; pydocs holds out its last 10% as test."""
  check_choice("text dataset", dataset, tuple(TEXT_DATASETS))
  spec = TEXT_DATASETS[dataset]
  if spec is None:
    corpus = datasets.bundled("text/pydocs")
    if corpus is None:
      corpus = np.frombuffer(gather_python_docs(max_bytes), np.uint8)
    else:
      # gather_python_docs(n) is the first n bytes of gather_python_docs(m > n).
      cap = int(datasets.bundled("text/pydocs_max_bytes"))
      if max_bytes > cap and len(corpus) >= cap:
        raise ValueError(f"the data bundle's pydocs corpus was cut at {cap} bytes, fewer than "
                         f"max_bytes={max_bytes}: re-write it with `python "
                         f"scripts/make_data_bundle.py PATH --pydocs_bytes {max_bytes}`.")
      corpus = corpus[:max_bytes]
    cut = int(0.9 * len(corpus))
    train, test = corpus[:cut], corpus[cut:]
  else:
    name, train_split, test_split = spec
    data_dir = resolve_data_dir(data_dir)
    train = np.frombuffer(_tfds_text(name, train_split, data_dir, max_bytes), np.uint8)
    test = np.frombuffer(_tfds_text(name, test_split, data_dir, max_bytes // 10), np.uint8)
  with jax.ensure_compile_time_eval():  # concrete arrays even if first loaded under jit
    return TextArrays(jnp.asarray(train), jnp.asarray(test))


def sample_windows(data: TextArrays, key: jax.Array, batch_size: int, seq_len: int,
                   split: str) -> dict[str, jax.Array]:
  """Random (batch, seq_len) next-byte problems: inputs and targets shifted by one."""
  (tokens,), lo, hi = datasets.pick_split(split, (data.train_tokens,), (data.test_tokens,))
  # A window lies wholly inside its split's range.
  starts = jax.random.randint(key, (batch_size,), lo, hi - seq_len)
  window = jnp.take(tokens, starts[:, None] + jnp.arange(seq_len + 1), axis=0).astype(jnp.int32)
  return {"inputs": window[:, :-1], "targets": window[:, 1:]}
