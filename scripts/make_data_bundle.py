#!/usr/bin/env python
"""Write the offline data bundle: the embedded data sources of this machine
(scikit-learn's digits and tabular sets, the pydocs corpus of this Python) in
one ``.npz``. A machine without scikit-learn (the GPU device) or with another
Python then trains on exactly the same data with ``LOPT_DATA_BUNDLE=PATH``.

    python scripts/make_data_bundle.py PATH [--pydocs_bytes N]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from meta_tasks import datasets, text  # noqa: E402


def bundle_arrays(pydocs_bytes: int = text.DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
  """The bundle's arrays, read from scikit-learn and this Python's install tree."""
  if os.environ.get(datasets.DATA_BUNDLE_ENV):
    raise ValueError(f"unset {datasets.DATA_BUNDLE_ENV}: a bundle is written from the sources, "
                     "not from another bundle.")
  arrays = {}
  for loader in ["load_digits"] + [spec[0] for spec in datasets.TABULAR_DATASETS.values()]:
    data, target = datasets.sklearn_arrays(loader)
    arrays[f"sklearn/{loader}/data"], arrays[f"sklearn/{loader}/target"] = data, target
  arrays["text/pydocs"] = np.frombuffer(text.gather_python_docs(pydocs_bytes), np.uint8)
  arrays["text/pydocs_max_bytes"] = np.asarray(pydocs_bytes, np.int64)
  return arrays


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("path", help="the .npz to write")
  parser.add_argument("--pydocs_bytes", type=int, default=text.DEFAULT_MAX_BYTES,
                      help="the pydocs corpus' cap (default: load_text's)")
  args = parser.parse_args()
  try:
    arrays = bundle_arrays(args.pydocs_bytes)
  except ValueError as e:
    parser.exit(2, f"{parser.prog}: {e}\n")
  os.makedirs(os.path.dirname(os.path.abspath(args.path)), exist_ok=True)
  np.savez_compressed(args.path, **arrays)
  print(f"wrote {args.path}: {len(arrays)} arrays, {os.path.getsize(args.path) / 1e6:.1f} MB")


if __name__ == "__main__":
  main()
