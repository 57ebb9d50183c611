#!/usr/bin/env python3
"""Regenerate the option-schema snapshot shipped for the pinned sd-scripts. Run it with the Python of
an sd-scripts venv; it runs the same introspection kohya-wrap runs live (kohya_wrap/sdscripts/introspect.py):

    /path/to/sd-venv/bin/python scripts/dump_option_schema.py --sd-scripts /path/to/sd-scripts \\
        --out kohya_wrap/data/option_schema/sd-scripts-v0.10.1.json
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv[0] = str(Path(__file__).resolve().parents[1] / "kohya_wrap" / "sdscripts" / "introspect.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
