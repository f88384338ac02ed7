"""The figure registry and runner: results are never overwritten or lost."""
import pathlib

import pytest

from dynsim import cli, figures


@pytest.fixture
def fake_figure():
    calls = {"n": 0, "fail": False}

    def fn(out: pathlib.Path, quick: bool = False):
        calls["n"] += 1
        (out / "table.csv").write_text(f"run,{calls['n']}\n")
        if calls["fail"]:
            raise RuntimeError("figure failed half-way")

    figures.available()  # load the real registry first
    figures.register("test-fake", "a test figure")(fn)
    yield calls
    figures._REGISTRY.pop("test-fake", None)


def test_rerun_keeps_previous_results(tmp_path, fake_figure):
    out = tmp_path / "results" / "test-fake"
    assert figures.run("test-fake", out) == out
    assert (out / "table.csv").read_text() == "run,1\n" and figures.last_previous is None
    (out / "my_notes.txt").write_text("user file")
    figures.run("test-fake", out)
    assert (out / "table.csv").read_text() == "run,2\n"
    kept = figures.last_previous
    assert kept.parent == tmp_path / "results" / ".previous"
    assert (kept / "table.csv").read_text() == "run,1\n" and (kept / "my_notes.txt").read_text() == "user file"
    figures.run("test-fake", out)  # a third run keeps the second, beside the first
    assert sorted(p.name for p in kept.parent.iterdir()) == sorted([kept.name, figures.last_previous.name])
    assert len(list(kept.parent.iterdir())) == 2


def test_failed_run_leaves_results_untouched(tmp_path, fake_figure):
    out = tmp_path / "test-fake"
    figures.run("test-fake", out)
    fake_figure["fail"] = True
    with pytest.raises(RuntimeError, match="half-way"):
        figures.run("test-fake", out)
    assert (out / "table.csv").read_text() == "run,1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test-fake"]  # no staging folder left


def test_bad_output_and_name(tmp_path, fake_figure, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        figures.run("test-fake", f)
    assert f.read_text() == "x"
    assert cli.main(["figure", "no-such-figure"]) == 2
    assert "name='no-such-figure' is unknown" in capsys.readouterr().err
    assert cli.main(["figure", "test-fake", "--out", str(tmp_path / "o")]) == 0
    assert cli.main(["figure", "test-fake", "--out", str(tmp_path / "o")]) == 0
    assert "previous contents kept in" in capsys.readouterr().out


# One module per paper or topic: every figure is registered by the module that owns it.
MODULES = {
    "nakerst-fig1": "nakerst_quadratic", "nakerst-fig2a": "nakerst_quadratic", "nakerst-fig2bc": "nakerst_ode",
    "nakerst-fig3": "nakerst_landscapes", "nakerst-fig4": "nakerst_landscapes",
    "nakerst-fig5": "training", "nakerst-fig6": "training", "wu-table2": "training", "wu-table3": "training",
    "nakerst-fig7": "nakerst_adaptive", "nakerst-fig8": "nakerst_adaptive", "adam-sa": "nakerst_adaptive",
    "quadratic-spectrum": "spectrum", "bu-hb-vs-nag": "bu_ntk",
    "wu-fig2": "wu_control", "wu-fig3": "wu_control", "wu-fig5": "wu_control", "wu-table1": "wu_control",
    "tune-quadratic": "tuning", "tune-mnist": "tuning", "hypergrad-chaos": "tuning",
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_figure_is_registered_by_its_module(name):
    assert figures.available()[name].fn.__module__ == f"dynsim.figures.{MODULES[name]}"


def test_x64_figures_run_in_float64(tmp_path):
    """``register(..., x64=True)``: the figure body sees float64 and a Path; the flag is off again after."""
    import jax
    import jax.numpy as jnp

    seen = {}

    @figures.register("test-x64", "a float64 test figure", x64=True)
    def fig(out, quick=False):
        seen["dtype"], seen["out"] = jnp.asarray(1.0).dtype, out

    try:
        with jax.enable_x64(False):  # the tests run with x64 on (conftest): switch it off around the call
            figures.run("test-x64", str(tmp_path / "x"))
            after = jnp.asarray(1.0).dtype
    finally:
        figures._REGISTRY.pop("test-x64", None)
    assert seen["dtype"] == jnp.float64 and isinstance(seen["out"], pathlib.Path)
    assert after == jnp.float32
    assert fig.__wrapped__.__name__ == "fig"
