"""Which code made a result: dynsim's version and, in a git checkout, its commit and whether the tree was dirty.

Every stored sweep (``config.json`` and the store's attributes) and every figure's
``config.json`` records :func:`revision`, so two results made by different code revisions
can be told apart even when the version number did not change.
"""
from __future__ import annotations

import functools
import pathlib
import subprocess

__all__ = ["revision"]


def _git(root: pathlib.Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine
        return None
    return r.stdout.strip() if r.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def revision() -> dict:
    """``{"dynsim_version", "git_commit", "git_dirty"}`` of the dynsim being run.

    The commit is that of the checkout holding this package, and only when the checkout's
    top level is the package's parent (an installed copy inside some other repository,
    e.g. a virtual environment in a user's project, has no commit of ours: ``None``).
    ``git_dirty`` counts modified tracked files, not untracked ones (results, scratch).
    Read once per process: a result records the code that was imported.
    """
    import dynsim

    root = pathlib.Path(dynsim.__file__).resolve().parents[1]
    top = _git(root, "rev-parse", "--show-toplevel")
    commit = dirty = None
    if top is not None and pathlib.Path(top).resolve() == root:
        commit = _git(root, "rev-parse", "HEAD")
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"dynsim_version": dynsim.__version__, "git_commit": commit, "git_dirty": dirty}
