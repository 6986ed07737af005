"""Run one Python way in this process: import its module first, then time only the copy.

Usage: python child.py MODULE:FUNCTION SETTINGS_JSON PARAM. Prints, last, one JSON line:
`seconds` of the copy, and the copy's own memory: `baseline`, the resident set after the
imports (and a garbage collection), and `peak`, the process's high-water mark during the copy
(VmHWM, reset before it through /proc/self/clear_refs, so an import's transient peak does not
count), both in bytes.
"""

import contextlib
import gc
import importlib
import json
import sys
import time
from pathlib import Path

from settings import Settings


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    target, settings_json, param = sys.argv[1:4]
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    settings = Settings.from_json(settings_json)
    gc.collect()
    # The high-water mark starts again here; where it cannot, the peak may include the
    # imports': the growth is then overstated, not hidden.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    baseline = _status("VmRSS")
    started = time.perf_counter()
    function(settings, param)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "baseline": baseline, "peak": _status("VmHWM")}))


if __name__ == "__main__":
    main()
