"""Every stored result and figure names the code that made it: version, git commit, dirty tree."""
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import dynsim
from dynsim import figures, provenance
from dynsim.figures import _io

ROOT = pathlib.Path(dynsim.__file__).resolve().parents[1]


def _git(*args) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


needs_checkout = pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                                    reason="dynsim is not run from a git checkout here")


@needs_checkout
def test_revision_is_this_checkouts_commit_and_state():
    rev = provenance.revision()
    assert rev["git_commit"] == _git("rev-parse", "HEAD") and len(rev["git_commit"]) == 40
    assert rev["git_dirty"] == bool(_git("status", "--porcelain", "--untracked-files=no"))
    assert rev["dynsim_version"] == dynsim.__version__


def test_a_copy_outside_any_checkout_has_no_commit(tmp_path):
    shutil.copytree(ROOT / "dynsim", tmp_path / "dynsim", ignore=shutil.ignore_patterns("__pycache__"))
    code = "import json, dynsim.provenance as p; print(json.dumps(p.revision()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert json.loads(out.stdout) == {"dynsim_version": dynsim.__version__, "git_commit": None, "git_dirty": None}


@needs_checkout
def test_a_stored_sweep_names_the_commit(tmp_path):
    dynsim.sweep("super_accelerated", "quadratic", {"k_eta": 0.01, "momentum": 0.9, "sigma": np.array([0.0, 9.0])},
                 256, ["rate"], progress=False, out=tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["code"]["git_commit"] == _git("rev-parse", "HEAD")
    assert dynsim.open_result(tmp_path / "s").attrs["git_commit"] == _git("rev-parse", "HEAD")


@pytest.fixture
def noted_figure():
    def fn(out: pathlib.Path, quick: bool = False):
        _io.save_config(out, "test-noted", {"n": 3 if quick else 30})
        _io.save_notes(out, "A test figure", "Ours: `dynsim figure test-noted`, n points.")

    figures.available()
    figures.register("test-noted", "a test figure with notes")(fn)
    yield
    figures._REGISTRY.pop("test-noted", None)


@needs_checkout
def test_figure_config_names_the_commit_and_a_quick_run_says_so(tmp_path, noted_figure):
    full = figures.run("test-noted", tmp_path / "full")
    quick = figures.run("test-noted", tmp_path / "quick", quick=True)
    cfg_full, cfg_quick = (json.loads((d / "config.json").read_text()) for d in (full, quick))
    assert cfg_full["git_commit"] == cfg_quick["git_commit"] == _git("rev-parse", "HEAD")
    assert (cfg_full["quick"], cfg_quick["quick"]) == (False, True)
    notes_full, notes_quick = ((d / "NOTES.md").read_text() for d in (full, quick))
    assert "--quick" not in notes_full and "`dynsim figure test-noted`" in notes_full
    assert "`dynsim figure test-noted --quick`" in notes_quick and "reduced run" in notes_quick
