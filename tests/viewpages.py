"""What the dynsim.view tests share: two small result stores (a landscape sweep with its
locate.csv, a training sweep with its sharpness), the loss computed independently from the
public API, and the browser tests' driver and helpers (Debian's chromium through selenium;
without chromium, chromedriver or selenium they skip, saying which is missing).
``DYNSIM_VIEW_SCREENSHOTS=DIR`` keeps their screenshots in DIR."""
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

import dynsim
from dynsim import analysis, data, landscapes, models, optim
from dynsim.engine.config import write_located
from dynsim.hessian import Hessian
from dynsim.view.page_data import PageData, open_source

K_ETA = np.geomspace(0.02, 0.5, 12)
SIGMA = np.linspace(-5.0, 15.0, 21)
MOMENTA = [0.8, 0.9]
STEPS = 256


def make_land_store(out):
    """A (kη, μ, σ) super-acceleration sweep on the quadratic, with its locate.csv."""
    ds = dynsim.sweep("super_accelerated", "quadratic", {"k_eta": K_ETA, "momentum": MOMENTA, "sigma": SIGMA},
                      STEPS, ["rate", "rho", "timescale", "diverged"], progress=False, out=out)
    write_located(out, dynsim.locate(ds, "sigma", refine_steps=1 << 12, T_scan=8))
    return out


def make_train_store(out):
    """A (η, σ) × 2 seeds training sweep of a tiny MLP on sklearn's digits, with its sharpness."""
    d = data.load("digits")
    d = d._replace(x_train=d.x_train[:120], y_train=d.y_train[:120], x_test=d.x_test[:40], y_test=d.y_test[:40])
    dynsim.train("super_accelerated", models.nielsen_mlp((5,), input_dim=64), d,
                 {"learning_rate": [0.1, 0.3, 1.0], "momentum": 0.9, "sigma": [0.0, 1.0, 3.0]},
                 steps=20, seeds=2, hessian=Hessian(10), progress=False, out=out)
    return out


def page(store, static=False, **kw):
    ds, located, _ = open_source(store)
    return PageData(ds, located, static=static, **kw)


def sa_loss(k_eta, momentum, sigma, steps=STEPS):
    """The loss along the run, computed here from the public API (float32, like the sweep)."""
    traj = dynsim.simulate(optim.super_accelerated(jnp.float32(k_eta), jnp.float32(momentum), jnp.float32(sigma)),
                           landscapes.quadratic(1.0), jnp.ones(1, jnp.float32), steps)
    return np.asarray(traj.loss, np.float64)


def browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'dynsim[view,dev]')"
    for exe in ("chromium", "chromedriver"):
        if not shutil.which(exe) and not pathlib.Path(f"/usr/bin/{exe}").exists():
            return f"{exe} is not installed (apt-get install chromium chromium-driver)"
    return None


browser_test = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


TIMEOUT = 90


def new_browser(tmp_path):
    """Debian's chromium, headless, driven by selenium."""
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
    return driver


def wait(driver, script, what, timeout=TIMEOUT):
    """Poll a JavaScript expression until it returns something truthy; that value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script(script), message=f"timed out waiting for {what}")


MODEL = "Bokeh.documents.length && Bokeh.documents[0].get_model_by_name({name!r})"


IMAGE = ("const d = Bokeh.documents[0].get_model_by_name('img').data; const im = d.image[0];"
          "const a = (Array.isArray(im[0]) || ArrayBuffer.isView(im[0])) ? im.flatMap((r) => Array.from(r))"
          " : Array.from(im); return {image: a.map((z) => (z === null || !isFinite(z)) ? null : z),"
          " nx: d.xv[0].length, ny: d.yv[0].length, xdim: d.xdim[0], ydim: d.ydim[0], fixed: d.fixed[0]};")


def image(driver):
    r = driver.execute_script(IMAGE)
    return np.array([np.nan if z is None else z for z in r["image"]], np.float64).reshape(r["ny"], r["nx"]), r


def columns(driver, name):
    """A named ColumnDataSource's columns as float arrays (NaN for null/NaN)."""
    cols = driver.execute_script(f"const d = {MODEL.format(name=name)}.data; return Object.fromEntries("
                                 "Object.entries(d).map(([k, v]) => [k, Array.from(v).map("
                                 "(z) => (typeof z === 'number' && isFinite(z)) ? z : null)]));")
    return {k: np.array([np.nan if z is None else z for z in v], float) for k, v in cols.items()}


def select(driver, name, text):
    """Choose ``text`` in the named selector with the mouse and keyboard, as a user does."""
    from selenium.webdriver.support.ui import Select

    el = wait(driver, f"const m = {MODEL.format(name=name)}; return m && Bokeh.index.find_one(m).input_el;",
               f"selector {name}")
    Select(el).select_by_visible_text(text)


def click_cell(driver, xi, yi):
    """A real mouse click on heatmap cell (xi, yi)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    x, y = driver.execute_script(f"""
        const v = Bokeh.index.find_one({MODEL.format(name='heatmap')});
        const r = v.el.getBoundingClientRect();
        return [r.left + v.frame.x_scale.compute({xi}), r.top + v.frame.y_scale.compute({yi})];""")
    ab = ActionBuilder(driver)
    ab.pointer_action.move_to_location(int(round(x)), int(round(y)))
    ab.pointer_action.click()
    ab.perform()


def shot(driver, tmp_path, name):
    keep = os.environ.get("DYNSIM_VIEW_SCREENSHOTS")
    path = pathlib.Path(keep) / f"{name}.png" if keep else tmp_path / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 20_000    # a rendered page, not a blank one
    return path


class Server:
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


def serve_and_check(browser, store, check, tmp_path, name):
    """Open the served page of ``store``, run ``check(browser)``, screenshot as ``name``, then Ctrl-C it."""
    server = Server(store)
    try:
        browser.get(server.url)
        check(browser)
        shot(browser, tmp_path, name)
    finally:
        try:
            server.stop()
        finally:
            server.kill()


def check_landscape_page(driver, store, live):
    """Change μ, then click a cell: the image is the store's; the panel shows that point."""
    ds = dynsim.open_result(store)
    wait(driver, f"const m = {MODEL.format(name='img')}; return m && m.data.image.length === 1;", "the heatmap")
    before, meta = image(driver)
    assert (meta["xdim"], meta["ydim"]) == ("k_eta", "sigma")
    np.testing.assert_allclose(before, ds.rate.sel(momentum=0.9).values.T, rtol=1e-6)
    select(driver, "sel-momentum", "0.8")
    wait(driver, f"return {MODEL.format(name='img')}.data.fixed[0].includes('0.8');", "the μ = 0.8 slice")
    after, _ = image(driver)
    assert not np.allclose(after, before, equal_nan=True)
    np.testing.assert_allclose(after, ds.rate.sel(momentum=0.8).values.T, rtol=1e-6)
    # the exact σ* overlay is analysis.critical_sigma at μ = 0.8 (mapped through the axes' coordinates)
    ex = wait(driver, f"const d = {MODEL.format(name='exact')}.data; return d.x.length ? d : null;",
               "the exact σ* overlay")
    xs, ys = np.array(ex["x"], float), np.array([np.nan if v is None else v for v in ex["y"]], float)
    ok = np.isfinite(ys) & (xs > 0.5) & (xs < len(K_ETA) - 1.5)
    assert ok.sum() > 20
    k = np.exp(np.interp(xs[ok], np.arange(len(K_ETA)), np.log(K_ETA)))
    s = np.interp(ys[ok], np.arange(len(SIGMA)), SIGMA)
    np.testing.assert_allclose(s, np.asarray(analysis.critical_sigma(k, 0.8)), rtol=1e-6, atol=1e-6)
    # the located σ* from locate.csv, at μ = 0.8
    loc = wait(driver, f"const d = {MODEL.format(name='located')}.data; return d.x.length ? d : null;",
                "the located optimum")
    table = open_source(store)[1]
    want = table[np.isclose(table.momentum, 0.8)]
    assert len(loc["x"]) == np.isfinite(want.sigma_star).sum() > 0

    # click a cell: the line plot goes through it; the live page also runs the point
    click_cell(driver, 4, 13)
    wait(driver, f"const d = {MODEL.format(name='tap')}.data; return d.xi[0] === 4 && d.yi[0] === 13;",
          "the click to land on cell (4, 13)")
    line = wait(driver, f"const d = {MODEL.format(name='line')}.data; return d.x.length ? d : null;", "the line")
    np.testing.assert_allclose(np.array([np.nan if v is None else v for v in line["y"]], float),
                               ds.rate.sel(momentum=0.8).values[:, 13], rtol=1e-6)
    if live:
        wait(driver, f"const f = {MODEL.format(name='trajfig')}; return f.visible && "
                      f"{MODEL.format(name='traj-loss')}.data.loss.length > 0;", "the trajectory panel")
        got = columns(driver, "traj-loss")["loss"]
        want = sa_loss(K_ETA[4], 0.8, SIGMA[13])
        np.testing.assert_allclose(got, np.where(want > 0, want, np.nan), rtol=1e-5)
        assert driver.execute_script(f"return {MODEL.format(name='phasefig')}.visible;")
    else:
        assert not driver.execute_script(f"return {MODEL.format(name='trajfig')}.visible;")
        assert "need Python" in driver.execute_script(f"return {MODEL.format(name='pointnote')}.text;")


def check_training_page(driver, store):
    """Change the seed selector, then click a cell: its curves appear, every seed, from the store."""
    ds = dynsim.open_result(store)
    wait(driver, f"const m = {MODEL.format(name='img')}; return m && m.data.image.length === 1;", "the heatmap")
    before, meta = image(driver)
    assert (meta["xdim"], meta["ydim"]) == ("learning_rate", "sigma")
    last = ds.test_accuracy.isel(step=-1).values.astype(np.float64)
    np.testing.assert_allclose(before, last.mean(-1).T, rtol=1e-6)
    select(driver, "sel-seed", "seed 1")
    wait(driver, f"return {MODEL.format(name='img')}.data.reduce[0] === '{{}}';", "the seed-1 slice")
    after, _ = image(driver)
    np.testing.assert_allclose(after, last[..., 1].T, rtol=1e-6)
    assert not np.allclose(after, before)
    click_cell(driver, 2, 1)
    wait(driver, f"const f = {MODEL.format(name='curve-loss')}; return f.visible && "
                  f"{MODEL.format(name='curves')}.data.step.length > 0;", "the curves panel")
    cols, hess = columns(driver, "curves"), columns(driver, "hessian")
    for s in (0, 1):
        np.testing.assert_allclose(cols[f"test_loss_{s}"], ds.test_loss.values[2, 1, s], rtol=1e-6)
        np.testing.assert_allclose(hess[f"sharpness_{s}"], ds.sharpness.values[2, 1, s, ::10], rtol=1e-6)
    # the server's JAX runs in float32 (no --x64)
    np.testing.assert_allclose(hess["threshold"], float(analysis.stability_threshold(1.0, 0.9, 1.0)), rtol=1e-6)
    assert driver.execute_script(f"return {MODEL.format(name='curve-sharpness')}.visible;")
