#!/usr/bin/env python
"""``lopt-evaluate`` from a checkout: the command of ``training.cli.evaluate``."""
import sys
from training.cli import evaluate as _cli
__getattr__ = _cli.__getattribute__  # the script's names are the module's (tests read them)
if __name__ == "__main__":
  sys.exit(_cli.main())
