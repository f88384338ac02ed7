"""dynsim.engine.config: TOML sweep configs with overrides, run from the CLI; bad input is one line."""
import json

from dynsim import cli
from dynsim import engine as sw


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('optimizer = "sa"\nlandscape = "quadratic"\nsteps = 128\n[grid]\nk_eta = [-0.1, 0.1]\n'
                   'momentum = 0.9\nsigma = 1.0\n')
    for argv in (["sweep", str(bad), "--out", str(tmp_path / "o")],
                 ["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")],
                 ["sweep", "--resume", str(tmp_path / "nothing")],
                 ["sweep", str(bad)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("dynsim sweep: error:"), err


def test_cli_runs_config_with_overrides_and_progress(tmp_path, capsys):
    cfgp = tmp_path / "c.toml"
    cfgp.write_text('optimizer = "sa"\nlandscape = "quadratic"\nsteps = 4096\nmetrics = ["rate"]\n'
                    '[grid]\nk_eta = [0.01, 0.1]\nmomentum = 0.9\nsigma = {linspace = [0, 10, 11]}\n')
    assert cli.main(["sweep", str(cfgp), "--out", str(tmp_path / "o"), "--set", "steps=256",
                     "--set", "grid.momentum=0.5", "--chunk-size", "7"]) == 0
    captured = capsys.readouterr()
    assert "point-steps/s" in captured.err  # the progress bar
    ds = sw.open_result(tmp_path / "o")
    assert ds.attrs["steps"] == 256 and json.loads(ds.attrs["fixed"])["momentum"] == 0.5
    assert (tmp_path / "o" / "config.toml").exists() and (tmp_path / "o" / "config.json").exists()
    assert cli.main(["sweep", "--resume", str(tmp_path / "o"), "--no-progress"]) == 0
    assert cli.main(["sweep", "--resume", str(tmp_path / "o"), "--chunk-size", "3"]) == 2
