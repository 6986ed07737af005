"""Run one Python way in this process: import its module first, then time only the copy.

Usage: python child.py MODULE:FUNCTION SETTINGS_JSON PARAM. Prints {"seconds": ...} last.
"""

import importlib
import json
import sys
import time

from settings import Settings


def main() -> None:
    target, settings_json, param = sys.argv[1:4]
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    settings = Settings.from_json(settings_json)
    started = time.perf_counter()
    function(settings, param)
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
