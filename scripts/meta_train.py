#!/usr/bin/env python
"""``lopt-meta-train`` from a checkout: the command of ``training.cli.meta_train``."""
import sys
from training.cli import meta_train as _cli
__getattr__ = _cli.__getattribute__  # the script's names are the module's (tests read them)
if __name__ == "__main__":
  sys.exit(_cli.console())
