"""Reproduce Fig. 5 (Sec. 7.1.2) into ``results/fig5/``: ``make reproduce-fig5 [PROFILE=paper]``.

The same as ``python scripts/reproduce_sweep.py fig5 ...`` (see there).
"""
from __future__ import annotations

import sys

from reproduce_sweep import main

if __name__ == "__main__":
    sys.exit(main(["fig5", *sys.argv[1:]]))
