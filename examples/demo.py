"""The ``tabby-async demo`` walk-through, as a script.

    python examples/demo.py

Starts the built-in TabbyAPI emulator on a free loopback port, walks the whole
model workflow with the SDK (list, load with progress, get, props, drafts,
embeddings, two handled errors, unload) and stops it. Needs no server.
See ``tabby_async/cli/_emulator.py`` (``run_demo``) for the code it runs.
"""

from __future__ import annotations

import sys

from tabby_async.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo"]))
