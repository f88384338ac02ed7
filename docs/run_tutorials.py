"""Execute every code block of a tutorial page, in order, in a fresh folder: the docs cannot rot.

    python docs/run_tutorials.py docs/tutorials/own-problem.md [...]

* a ```python block runs in one namespace per page (like a notebook);
* a ```bash block runs with ``bash -euo pipefail`` in the same folder;
* a block of any language whose first line is ``# file: NAME`` is written to NAME instead
  (a script or config the following blocks use);
* any other fence (```text for output) is shown only.

Exit status 1 and the failing block's text when any block fails. ``tests/test_docs.py``
runs each tutorial this way.
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import traceback

FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def blocks(text: str):
    """``(language, code)`` of each fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def run(page: pathlib.Path) -> float:
    page = page.resolve()
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path,
           "MPLBACKEND": "Agg"}
    os.environ.update(env)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        sys.path.insert(0, tmp)
        namespace: dict = {"__name__": "__tutorial__"}
        try:
            for n, (lang, code) in enumerate(blocks(page.read_text(encoding="utf-8")), 1):
                first = code.split("\n", 1)[0]
                if first.startswith("# file: "):
                    pathlib.Path(first[len("# file: "):].strip()).write_text(code)
                elif lang == "python":
                    try:
                        exec(compile(code, f"{page.name}[block {n}]", "exec"), namespace)
                    except Exception:
                        traceback.print_exc()
                        sys.exit(f"{page.name}: python block {n} failed:\n{code}")
                elif lang == "bash":
                    r = subprocess.run(["bash", "-euo", "pipefail", "-c", code], env=env)
                    if r.returncode:
                        sys.exit(f"{page.name}: bash block {n} exited {r.returncode}:\n{code}")
        finally:
            os.chdir(cwd)
            sys.path.remove(tmp)
    return time.perf_counter() - t0


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"{p}: ok in {run(pathlib.Path(p)):.1f} s", flush=True)
