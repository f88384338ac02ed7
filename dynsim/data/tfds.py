"""The tensorflow_datasets backend: read a prepared tfds folder offline, or build one from the
local, checked files.

A tfds dataset folder is ``<root>/<name>/<version>/`` holding dataset_info.json,
features.json and the record files. :func:`prepare_tfds` writes one from the local, checked
files with tfds's own builder class for ``name`` (same features, version and split names as
``tfds.load`` would produce) in the ``array_record`` format, which tfds reads and writes
without TensorFlow. :func:`load_tfds` (``load(..., backend="tfds")``) reads such a folder --
or a user's own -- through ``tfds.builder_from_directory``, undoes tfds's key-hash shuffle
and returns the files backend's arrays bit for bit: nothing is ever downloaded.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dynsim.data.dataset import DataError, Dataset, unit_float
from dynsim.data.fetch import reference_sha256
from dynsim.data.idx import idx_sha256
from dynsim.data.paths import GET_HINT, canonical_name
from dynsim.data.sources import cifar_uint8, idx_uint8

__all__ = ["TFDS_NAMES", "CIFAR10_LABELS", "import_tfds", "have_module", "tfds_name", "tfds_root", "tfds_target",
           "tfds_dir", "load_tfds", "prepare_tfds"]

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


def import_tfds() -> Any:
    """tensorflow_datasets with its GCS access switched off; DataError if not installed."""
    try:
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core.utils import gcs_utils
    except ImportError as e:
        raise DataError(_TFDS_INSTALL) from e
    gcs_utils._is_gcs_disabled = True  # the default in 4.9; make sure nothing looks at gs://
    return tfds


def have_module(name: str) -> bool:
    """Whether ``name`` is importable, without importing it (False if blocked in sys.modules)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None
        return False


def tfds_name(name: str) -> str:
    """``name`` canonical (:func:`~dynsim.data.paths.canonical_name`); DataError if tfds has no such dataset."""
    name = canonical_name(name)
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


def tfds_target(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder :func:`prepare_tfds` writes: ``<root>/<name>/<version>``, the version tfds's
    builder for ``name`` generates; DataError if tensorflow-datasets is not installed."""
    name = tfds_name(name)
    return tfds_root(data_dir) / name / str(import_tfds().builder_cls(name).VERSION)


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
    name = tfds_name(name)
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
        if not have_module("tensorflow"):
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
    name = tfds_name(name)
    tfds = import_tfds()
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
    if reference_sha256(name) is not None:
        bad = _reference_mismatches(name, {k: (x[..., 0], y) for k, (x, y) in out.items()})
        if bad:
            raise DataError(f"{bdir}: the {name} examples read back (in tfds's generation order) differ from "
                            f"the reference IDX files ({', '.join(bad)} sha256 mismatch), so they would not match "
                            f"backend='files'; {hint}")
    return bdir, out


def _reference_mismatches(name: str, split: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """The IDX files of ``name`` whose reference sha256 the arrays ``split`` do not reproduce
    (``{"train": (x, y), "test": (x, y)}``, x (N, H, W) uint8, y labels in [0, 10))."""
    ref = reference_sha256(name)
    assert ref is not None, name  # only called for names with reference checksums (mnist, fashion_mnist)
    arrays = {"train-images-idx3-ubyte": split["train"][0], "train-labels-idx1-ubyte": split["train"][1],
              "t10k-images-idx3-ubyte": split["test"][0], "t10k-labels-idx1-ubyte": split["test"][1]}
    return [stem for stem, arr in arrays.items() if idx_sha256(arr) != ref[stem]]


def load_tfds(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Dataset ``name`` read from a prepared tfds folder (``backend="tfds"`` of
    :func:`dynsim.data.load`): the same arrays, bit for bit, as the files backend."""
    _, out = _load_tfds_uint8(name, data_dir)
    (xtr, ytr), (xte, yte) = out["train"], out["test"]
    return Dataset(unit_float(xtr), ytr.astype(np.int32), unit_float(xte), yte.astype(np.int32),
                   name=name, num_classes=10)


def prepare_tfds(name: str, data_dir: str | os.PathLike | None = None,
                 source_dir: str | os.PathLike | None = None) -> Path:
    """Write the tfds folder of ``name`` from the local files, offline; return it.

    The source is what ``backend="files"`` loads from ``source_dir`` (mnist and
    fashion_mnist must match the reference sha256 in :data:`~dynsim.data.fetch.MNIST_SHA256` /
    :data:`~dynsim.data.fetch.FASHION_MNIST_SHA256`). The folder, ``<root>/<name>/<version>`` under
    :func:`tfds_root` ``(data_dir)``, is generated by tfds's own builder class for
    ``name`` with the data supplied locally instead of downloaded, in the
    ``array_record`` format, so it has the standard features (``image`` uint8,
    ``label``), the examples in the order tfds itself stores them, and is read
    without TensorFlow by ``tfds.data_source(name, data_dir=root, download=False)``
    and ``tfds.builder_from_directory`` (``tfds.load`` needs TensorFlow). An
    existing folder is verified against the source and kept; a differing one
    raises (never overwritten).
    """
    name = tfds_name(name)
    tfds = import_tfds()
    if name == "cifar10":
        src, split = cifar_uint8(source_dir)
    else:
        src, idx = idx_uint8(name, source_dir)
        split = {k: (x[..., None], y) for k, (x, y) in idx.items()}
        bad = _reference_mismatches(name, idx)
        if bad:
            raise DataError(f"{src}: {', '.join(bad)} differ from the reference {name} sha256, so they are not "
                            f"{name}; not building a tfds {name} folder from them ({GET_HINT[name]})")
    base = tfds.builder_cls(name)
    root = tfds_root(data_dir)
    target = tfds_target(name, data_dir)
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
    missing = [m for m in ("PIL", "importlib_resources") if not have_module(m)]
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

    # a base class chosen at run time (tfds's builder for ``name``), which mypy cannot check
    class _FromLocalFiles(base, skip_registration=True):  # type: ignore[misc,valid-type,call-arg]
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


