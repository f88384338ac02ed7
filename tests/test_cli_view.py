"""``dynsim view``: bad input refused in one line (missing folder, taken file or port, no store)."""
import subprocess

import processes
import pytest

pytest.importorskip("bokeh")


@pytest.mark.slow
def test_cli_refuses_bad_input_in_one_line(land_store, tmp_path):
    def run(*argv):
        return subprocess.run([*processes.DYNSIM, "view", *map(str, argv)], env=processes.env(),
                              capture_output=True, text=True, timeout=120)

    r = run(tmp_path / "nowhere")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such result directory" in r.stderr
    (tmp_path / "taken.html").write_text("mine")
    r = run(land_store, "--html", tmp_path / "taken.html")
    assert r.returncode == 2 and "never overwritten" in r.stderr and r.stderr.count("\n") == 1
    assert (tmp_path / "taken.html").read_text() == "mine"
    r = run(land_store, "--port", "70000")
    assert r.returncode == 2 and "--port 70000" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run(tmp_path / "empty")
    assert r.returncode == 2 and "config.json is missing" in r.stderr and r.stderr.count("\n") == 1
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = run(land_store, "--port", taken.getsockname()[1], "--no-browser")
    assert r.returncode == 2 and "cannot listen on 127.0.0.1" in r.stderr and r.stderr.count("\n") == 1
    r = run(land_store, "--html", tmp_path / "ok.html")
    assert r.returncode == 0 and (tmp_path / "ok.html").stat().st_size > 100_000
