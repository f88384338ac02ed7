"""The documentation: every tutorial's code blocks run (docs/run_tutorials.py), in a fresh process each."""
import pathlib
import subprocess
import sys

import processes
import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))


def test_there_are_tutorials_with_code():
    from importlib import util

    spec = util.spec_from_file_location("run_tutorials", DOCS / "run_tutorials.py")
    mod = util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert len(TUTORIALS) >= 6
    for page in TUTORIALS:
        assert any(lang in ("python", "bash") for lang, _ in mod.blocks(page.read_text())), page.name


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(page):
    r = subprocess.run([sys.executable, str(DOCS / "run_tutorials.py"), str(page)], env=processes.env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
