"""dynsim view: the page's data (slices, overlays, clicks), the static file, the CLI, and a real browser.

The browser tests drive Debian's chromium through selenium: they start ``dynsim view`` on
a small store, change a selector and check the plotted data against the store, click a
cell and check the panel that appears against dynsim computed here, stop the server with
SIGINT, and do the same on the static ``--html`` page. Without chromium, chromedriver or
selenium they skip, saying which is missing. ``DYNSIM_VIEW_SCREENSHOTS=DIR`` keeps their
screenshots in DIR.
"""
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import threading

import jax.numpy as jnp
import numpy as np
import processes
import pytest

pytest.importorskip("bokeh")
import dynsim  # noqa: E402
from dynsim import analysis, data, landscapes, models, optim  # noqa: E402
from dynsim import view as dview  # noqa: E402
from dynsim.engine.config import write_located  # noqa: E402
from dynsim.hessian import Hessian  # noqa: E402

K_ETA = np.geomspace(0.02, 0.5, 12)
SIGMA = np.linspace(-5.0, 15.0, 21)
MOMENTA = [0.8, 0.9]
STEPS = 256


@pytest.fixture(scope="module")
def land_store(tmp_path_factory):
    """A (kη, μ, σ) super-acceleration sweep on the quadratic, with its locate.csv."""
    out = tmp_path_factory.mktemp("view") / "land"
    ds = dynsim.sweep("super_accelerated", "quadratic", {"k_eta": K_ETA, "momentum": MOMENTA, "sigma": SIGMA},
                      STEPS, ["rate", "rho", "timescale", "diverged"], progress=False, out=out)
    write_located(out, dynsim.locate(ds, "sigma", refine_steps=1 << 12, T_scan=8))
    return out


@pytest.fixture(scope="module")
def train_store(tmp_path_factory):
    """A (η, σ) × 2 seeds training sweep of a tiny MLP on sklearn's digits, with its sharpness."""
    out = tmp_path_factory.mktemp("view") / "train"
    d = data.load("digits")
    d = d._replace(x_train=d.x_train[:120], y_train=d.y_train[:120], x_test=d.x_test[:40], y_test=d.y_test[:40])
    dynsim.train("super_accelerated", models.nielsen_mlp((5,), input_dim=64), d,
                 {"learning_rate": [0.1, 0.3, 1.0], "momentum": 0.9, "sigma": [0.0, 1.0, 3.0]},
                 steps=20, seeds=2, hessian=Hessian(10), progress=False, out=out)
    return out


def _page(store, static=False, **kw):
    ds, located, _ = dview._open(store)
    return dview.PageData(ds, located, static=static, **kw)


def _sa_loss(k_eta, momentum, sigma, steps=STEPS):
    """The loss along the run, computed here from the public API (float32, like the sweep)."""
    traj = dynsim.simulate(optim.super_accelerated(jnp.float32(k_eta), jnp.float32(momentum), jnp.float32(sigma)),
                           landscapes.quadratic(1.0), jnp.ones(1, jnp.float32), steps)
    return np.asarray(traj.loss, np.float64)


# --------------------------------------------------------------------------- page data


def test_slice_reads_the_store_and_strides_large_axes(land_store):
    page = _page(land_store)
    ds = page.ds
    cols = page.slice2d("rate", "k_eta", "sigma", {"momentum": "0.8"})
    np.testing.assert_array_equal(cols["image"][0], ds.rate.sel(momentum=0.8).values.T.astype(np.float32))
    assert cols["xv"][0] == K_ETA.tolist() and json.loads(cols["fixed"][0]) == {"momentum": 0.8}
    # transposed axes and a cap: every 3rd σ, every 2nd kη
    cols = page.slice2d("rho", "sigma", "k_eta", {"momentum": "0.9"}, cap=7)
    want = ds.rho.sel(momentum=0.9).values[::2, ::3]
    np.testing.assert_array_equal(cols["image"][0], want.astype(np.float32))
    assert cols["xv"][0] == SIGMA[::3].tolist() and cols["xi"][0] == list(range(0, 21, 3))
    with pytest.raises(ValueError, match="cannot show"):
        page.slice2d("rate", "sigma", "sigma", {})


def test_seed_reductions_and_training_defaults(train_store):
    page = _page(train_store)
    ds = page.ds
    assert page.kind == "train" and page.default_var() == "test_accuracy"
    assert page.default_axes("test_accuracy") == ("learning_rate", "sigma")
    sel = page.default_selection()
    assert sel["seed"] == "mean" and sel["step"] == page.options["step"][-1]
    assert page.options["seed"] == ["mean", "min", "max", "seed 0", "seed 1"]
    last = ds.train_loss.isel(step=-1).values.astype(np.float64)       # (lr, sigma, seed)
    for how, fn in (("mean", np.nanmean), ("min", np.nanmin), ("max", np.nanmax)):
        cols = page.slice2d("train_loss", "learning_rate", "sigma", {**sel, "seed": how})
        np.testing.assert_allclose(cols["image"][0], fn(last, axis=-1).T, rtol=1e-6)
    cols = page.slice2d("train_loss", "learning_rate", "sigma", {**sel, "seed": "seed 1"})
    np.testing.assert_array_equal(cols["image"][0], last[..., 1].T.astype(np.float32))


def test_static_page_strides_every_variable_under_its_budget(land_store):
    page = _page(land_store, static=True, cells=300)
    emb = page.embedded()
    for v, a in emb["arrays"].items():
        assert a["data"].size == np.prod(a["shape"]) <= 300, v
        strided = page.ds[v].isel({d: slice(None, None, page.strides[d]) for d in a["dims"]}).values
        np.testing.assert_array_equal(a["data"], strided.astype(np.float32).ravel())
    # the selectors offer exactly the embedded values
    assert page.options["sigma"] == [dview._fmt(s) for s in SIGMA[::page.strides["sigma"]]]
    assert max(page.strides.values()) > 1


def test_trajectory_is_simulate_at_the_clicked_point(land_store):
    page = _page(land_store)
    idx = page.point("k_eta", "sigma", 4, 13, {"momentum": "0.8"})
    assert idx == {"k_eta": 4, "sigma": 13, "momentum": 0}
    t = page.trajectory(idx)
    want = _sa_loss(K_ETA[4], 0.8, SIGMA[13])
    np.testing.assert_array_equal(t["loss"]["step"], np.arange(STEPS + 1))
    np.testing.assert_allclose(t["loss"]["loss"], np.where(want > 0, want, np.nan), rtol=1e-6)
    assert t["labels"][:2] == ["θ", "m (θ_i − θ_(i−1))"] and "sigma=" in t["labels"][2]


def test_training_curves_and_exact_threshold(train_store):
    page = _page(train_store)
    ds = page.ds
    out = page.curves({"learning_rate": 2, "sigma": 1, "seed": 0, "step": 0})
    cols, hess = out["curves"], out["hessian"]
    np.testing.assert_array_equal(cols["step"], ds.step.values.astype(float))
    np.testing.assert_array_equal(hess["step"], [0.0, 10.0, 20.0])      # Hessian(10)
    for s in (0, 1):
        np.testing.assert_allclose(cols[f"train_loss_{s}"], ds.train_loss.values[2, 1, s], rtol=1e-7)
        np.testing.assert_allclose(hess[f"sharpness_{s}"], ds.sharpness.values[2, 1, s, ::10], rtol=1e-7)
        assert np.isfinite(hess[f"sharpness_{s}"]).all()
    np.testing.assert_allclose(hess["threshold"], float(analysis.stability_threshold(1.0, 0.9, 1.0)), rtol=1e-12)


def test_one_swept_dimension_and_a_one_long_dimension(tmp_path):
    ds = dynsim.sweep("super_accelerated", "quadratic", {"k_eta": [0.05], "momentum": 0.9, "sigma": SIGMA},
                      STEPS, ["rate", "diverged"], progress=False, out=tmp_path / "line")
    page = _page(tmp_path / "line")
    assert page.default_axes("rate") == ("sigma", None)
    cols = page.slice2d("rate", "sigma", None, page.default_selection())
    np.testing.assert_array_equal(cols["image"][0], ds.rate.values.reshape(1, -1).astype(np.float32))
    html = dview.save_html(tmp_path / "line", tmp_path / "line.html").read_text()
    assert '"sel-sigma"' in html and '"sel-k_eta"' not in html     # no selector for a 1-long dim


def test_static_html_is_self_contained(land_store, tmp_path):
    path = dview.save_html(land_store, tmp_path / "page.html")
    html = path.read_text()
    assert "Bokeh" in html and '"sel-momentum"' in html
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']https?:", html)   # nothing fetched
    assert not list(tmp_path.glob("*.tmp"))
    shown = dynsim.view(dynsim.open_result(land_store))
    assert shown._repr_html_().startswith("<iframe srcdoc=") and "sel-var" in shown.html


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


# --------------------------------------------------------------------------- the browser


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'dynsim[view,dev]')"
    for exe in ("chromium", "chromedriver"):
        if not shutil.which(exe) and not pathlib.Path(f"/usr/bin/{exe}").exists():
            return f"{exe} is not installed (apt-get install chromium chromium-driver)"
    return None


browser_test = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
TIMEOUT = 90


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chrome'}"):
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=opts)
    driver.set_script_timeout(TIMEOUT)
    yield driver
    driver.quit()


def _wait(driver, script, what, timeout=TIMEOUT):
    """Poll a JavaScript expression until it returns something truthy; that value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script(script), message=f"timed out waiting for {what}")


_MODEL = "Bokeh.documents.length && Bokeh.documents[0].get_model_by_name({name!r})"
_IMAGE = ("const d = Bokeh.documents[0].get_model_by_name('img').data; const im = d.image[0];"
          "const a = (Array.isArray(im[0]) || ArrayBuffer.isView(im[0])) ? im.flatMap((r) => Array.from(r))"
          " : Array.from(im); return {image: a.map((z) => (z === null || !isFinite(z)) ? null : z),"
          " nx: d.xv[0].length, ny: d.yv[0].length, xdim: d.xdim[0], ydim: d.ydim[0], fixed: d.fixed[0]};")


def _image(driver):
    r = driver.execute_script(_IMAGE)
    return np.array([np.nan if z is None else z for z in r["image"]], np.float64).reshape(r["ny"], r["nx"]), r


def _columns(driver, name):
    """A named ColumnDataSource's columns as float arrays (NaN for null/NaN)."""
    cols = driver.execute_script(f"const d = {_MODEL.format(name=name)}.data; return Object.fromEntries("
                                 "Object.entries(d).map(([k, v]) => [k, Array.from(v).map("
                                 "(z) => (typeof z === 'number' && isFinite(z)) ? z : null)]));")
    return {k: np.array([np.nan if z is None else z for z in v], float) for k, v in cols.items()}


def _select(driver, name, text):
    """Choose ``text`` in the named selector with the mouse and keyboard, as a user does."""
    from selenium.webdriver.support.ui import Select

    el = _wait(driver, f"const m = {_MODEL.format(name=name)}; return m && Bokeh.index.find_one(m).input_el;",
               f"selector {name}")
    Select(el).select_by_visible_text(text)


def _click_cell(driver, xi, yi):
    """A real mouse click on heatmap cell (xi, yi)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    x, y = driver.execute_script(f"""
        const v = Bokeh.index.find_one({_MODEL.format(name='heatmap')});
        const r = v.el.getBoundingClientRect();
        return [r.left + v.frame.x_scale.compute({xi}), r.top + v.frame.y_scale.compute({yi})];""")
    ab = ActionBuilder(driver)
    ab.pointer_action.move_to_location(int(round(x)), int(round(y)))
    ab.pointer_action.click()
    ab.perform()


def _shot(driver, tmp_path, name):
    keep = os.environ.get("DYNSIM_VIEW_SCREENSHOTS")
    path = pathlib.Path(keep) / f"{name}.png" if keep else tmp_path / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 20_000    # a rendered page, not a blank one
    return path


class _Server:
    """``dynsim view DIR --port 0 --no-browser`` in a subprocess; its URL from its first line."""

    def __init__(self, store):
        self.proc = subprocess.Popen([*processes.DYNSIM, "view", str(store), "--port", "0", "--no-browser"],
                                     env=processes.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [*[lines.put(x) for x in self.proc.stdout], lines.put(None)],
                         daemon=True).start()
        try:
            first = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            first = None
        if first is None:
            self.proc.kill()
            pytest.fail("dynsim view printed no URL: " + self.proc.stderr.read()[-2000:])
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", first)
        assert m, first
        self.url = m.group(1)

    def stop(self):
        """SIGINT, as Ctrl-C: a clean exit (status 0) within the timeout."""
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("dynsim view did not stop on SIGINT")
        err = self.proc.stderr.read()
        assert rc == 0, err[-2000:]
        assert "Traceback" not in err, err[-2000:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _serve_and_check(browser, store, check, tmp_path, shot):
    """Open the served page of ``store``, run ``check(browser)``, screenshot, then Ctrl-C it."""
    server = _Server(store)
    try:
        browser.get(server.url)
        check(browser)
        _shot(browser, tmp_path, shot)
    finally:
        try:
            server.stop()
        finally:
            server.kill()


def _check_landscape_page(driver, store, live):
    """Change μ, then click a cell: the image is the store's; the panel shows that point."""
    ds = dynsim.open_result(store)
    _wait(driver, f"const m = {_MODEL.format(name='img')}; return m && m.data.image.length === 1;", "the heatmap")
    before, meta = _image(driver)
    assert (meta["xdim"], meta["ydim"]) == ("k_eta", "sigma")
    np.testing.assert_allclose(before, ds.rate.sel(momentum=0.9).values.T, rtol=1e-6)
    _select(driver, "sel-momentum", "0.8")
    _wait(driver, f"return {_MODEL.format(name='img')}.data.fixed[0].includes('0.8');", "the μ = 0.8 slice")
    after, _ = _image(driver)
    assert not np.allclose(after, before, equal_nan=True)
    np.testing.assert_allclose(after, ds.rate.sel(momentum=0.8).values.T, rtol=1e-6)
    # the exact σ* overlay is analysis.critical_sigma at μ = 0.8 (mapped through the axes' coordinates)
    ex = _wait(driver, f"const d = {_MODEL.format(name='exact')}.data; return d.x.length ? d : null;",
               "the exact σ* overlay")
    xs, ys = np.array(ex["x"], float), np.array([np.nan if v is None else v for v in ex["y"]], float)
    ok = np.isfinite(ys) & (xs > 0.5) & (xs < len(K_ETA) - 1.5)
    assert ok.sum() > 20
    k = np.exp(np.interp(xs[ok], np.arange(len(K_ETA)), np.log(K_ETA)))
    s = np.interp(ys[ok], np.arange(len(SIGMA)), SIGMA)
    np.testing.assert_allclose(s, np.asarray(analysis.critical_sigma(k, 0.8)), rtol=1e-6, atol=1e-6)
    # the located σ* from locate.csv, at μ = 0.8
    loc = _wait(driver, f"const d = {_MODEL.format(name='located')}.data; return d.x.length ? d : null;",
                "the located optimum")
    table = dview._open(store)[1]
    want = table[np.isclose(table.momentum, 0.8)]
    assert len(loc["x"]) == np.isfinite(want.sigma_star).sum() > 0

    # click a cell: the line plot goes through it; the live page also runs the point
    _click_cell(driver, 4, 13)
    _wait(driver, f"const d = {_MODEL.format(name='tap')}.data; return d.xi[0] === 4 && d.yi[0] === 13;",
          "the click to land on cell (4, 13)")
    line = _wait(driver, f"const d = {_MODEL.format(name='line')}.data; return d.x.length ? d : null;", "the line")
    np.testing.assert_allclose(np.array([np.nan if v is None else v for v in line["y"]], float),
                               ds.rate.sel(momentum=0.8).values[:, 13], rtol=1e-6)
    if live:
        _wait(driver, f"const f = {_MODEL.format(name='trajfig')}; return f.visible && "
                      f"{_MODEL.format(name='traj-loss')}.data.loss.length > 0;", "the trajectory panel")
        got = _columns(driver, "traj-loss")["loss"]
        want = _sa_loss(K_ETA[4], 0.8, SIGMA[13])
        np.testing.assert_allclose(got, np.where(want > 0, want, np.nan), rtol=1e-5)
        assert driver.execute_script(f"return {_MODEL.format(name='phasefig')}.visible;")
    else:
        assert not driver.execute_script(f"return {_MODEL.format(name='trajfig')}.visible;")
        assert "need Python" in driver.execute_script(f"return {_MODEL.format(name='pointnote')}.text;")


def _check_training_page(driver, store):
    """Change the seed selector, then click a cell: its curves appear, every seed, from the store."""
    ds = dynsim.open_result(store)
    _wait(driver, f"const m = {_MODEL.format(name='img')}; return m && m.data.image.length === 1;", "the heatmap")
    before, meta = _image(driver)
    assert (meta["xdim"], meta["ydim"]) == ("learning_rate", "sigma")
    last = ds.test_accuracy.isel(step=-1).values.astype(np.float64)
    np.testing.assert_allclose(before, last.mean(-1).T, rtol=1e-6)
    _select(driver, "sel-seed", "seed 1")
    _wait(driver, f"return {_MODEL.format(name='img')}.data.reduce[0] === '{{}}';", "the seed-1 slice")
    after, _ = _image(driver)
    np.testing.assert_allclose(after, last[..., 1].T, rtol=1e-6)
    assert not np.allclose(after, before)
    _click_cell(driver, 2, 1)
    _wait(driver, f"const f = {_MODEL.format(name='curve-loss')}; return f.visible && "
                  f"{_MODEL.format(name='curves')}.data.step.length > 0;", "the curves panel")
    cols, hess = _columns(driver, "curves"), _columns(driver, "hessian")
    for s in (0, 1):
        np.testing.assert_allclose(cols[f"test_loss_{s}"], ds.test_loss.values[2, 1, s], rtol=1e-6)
        np.testing.assert_allclose(hess[f"sharpness_{s}"], ds.sharpness.values[2, 1, s, ::10], rtol=1e-6)
    # the server's JAX runs in float32 (no --x64)
    np.testing.assert_allclose(hess["threshold"], float(analysis.stability_threshold(1.0, 0.9, 1.0)), rtol=1e-6)
    assert driver.execute_script(f"return {_MODEL.format(name='curve-sharpness')}.visible;")


@browser_test
@pytest.mark.slow
def test_browser_server_landscape(land_store, browser, tmp_path):
    _serve_and_check(browser, land_store, lambda b: _check_landscape_page(b, land_store, live=True), tmp_path,
                     "server-landscape")


@browser_test
@pytest.mark.slow
def test_browser_server_training(train_store, browser, tmp_path):
    _serve_and_check(browser, train_store, lambda b: _check_training_page(b, train_store), tmp_path,
                     "server-training")


@browser_test
@pytest.mark.slow
def test_browser_static_pages(land_store, train_store, browser, tmp_path):
    for store, check, name in ((land_store, lambda: _check_landscape_page(browser, land_store, live=False),
                                "static-landscape"),
                               (train_store, lambda: _check_training_page(browser, train_store), "static-training")):
        page = tmp_path / f"{name}.html"
        processes.run([*processes.DYNSIM, "view", str(store), "--html", str(page)])
        browser.get(page.as_uri())
        check()
        _shot(browser, tmp_path, name)
