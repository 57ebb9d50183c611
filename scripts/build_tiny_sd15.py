#!/usr/bin/env python3
"""Build the tiny random SD1.5 model sd-scripts accepts offline (for tests and benchmarks). Run it with
the Python of an sd-scripts venv; it runs kohya_wrap/sdscripts/tinymodel.py, which `kohya-wrap demo` uses:

    /path/to/sd-venv/bin/python scripts/build_tiny_sd15.py OUT_DIR [--tokenizer-cache DIR]
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv[0] = str(Path(__file__).resolve().parents[1] / "kohya_wrap" / "sdscripts" / "tinymodel.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
