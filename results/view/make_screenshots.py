"""Regenerate the screenshots of ``dynsim view`` in this folder (needs chromium + chromium-driver).

    python results/view/make_screenshots.py [WORKDIR]

Builds two real stores in WORKDIR (default: a temporary folder): the nakerst-fig1 sweep
(the figure's own grid, 69 kη × 261 σ × 2048 steps, with its refined ``locate.csv``) and
a training sweep (Nielsen's 64-30-10 MLP on sklearn's digits, 5 η × 4 σ × 3 seeds,
300 full-batch steps, sharpness every 25 steps). Then it serves each with ``dynsim view``,
clicks a cell in a headless chromium and saves the page here.
"""
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import dynsim  # noqa: E402
from dynsim import data, models  # noqa: E402
from dynsim.engine.config import write_located  # noqa: E402
from dynsim.hessian import Hessian  # noqa: E402


def fig1_store(out: pathlib.Path) -> pathlib.Path:
    from dynsim.figures import nakerst_quadratic as nq

    if (out / "config.json").exists():
        return out
    cfg = nq._fig1_config(False)
    k_eta = np.union1d(nq._axis(cfg["k_eta"]), nq.FIG1_T_KETA)
    grid = {"k_eta": k_eta, "momentum": nq.G, "sigma": nq._axis(cfg["sigma"])}
    ds = dynsim.sweep("super_accelerated", "quadratic", grid,
                      cfg["steps"], ["rate", "rho", "timescale", "diverged"], progress=False, out=out)
    write_located(out, dynsim.locate(ds, "sigma", refine_steps=cfg["refine_steps"], T_scan=cfg["T_scan"]))
    return out


def train_store(out: pathlib.Path) -> pathlib.Path:
    if (out / "config.json").exists():
        return out
    dynsim.train("super_accelerated", models.nielsen_mlp((30,), input_dim=64), data.load("digits"),
                 {"learning_rate": np.geomspace(0.1, 3.0, 5).tolist(), "momentum": 0.9, "sigma": [0.0, 1.0, 2.0, 4.0]},
                 steps=300, seeds=3, hessian=Hessian(25), progress=False, out=out)
    return out


def shoot(store: pathlib.Path, png: pathlib.Path, cell, select=()) -> None:
    import viewpages as tv
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    proc = subprocess.Popen([sys.executable, "-m", "dynsim", "view", str(store), "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, text=True)
    url = re.search(r"(http://127\.0\.0\.1:\d+/)", proc.stdout.readline()).group(1)
    opts = webdriver.ChromeOptions()
    profile = tempfile.mkdtemp()
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1400,1000", f"--user-data-dir={profile}"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.get(url)
        tv.wait(driver, f"const m = {tv.MODEL.format(name='img')}; return m && m.data.image.length === 1;", "heatmap")
        for name, text in select:
            tv.select(driver, name, text)
        tv.click_cell(driver, *cell)
        tv.wait(driver, "const v = Bokeh.documents[0].get_model_by_name('pointnote').text;"
                         "return !v.startsWith('Click');", "the point panel")
        tv.wait(driver, "return Bokeh.documents[0].roots().length && document.readyState === 'complete';", "render")
        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, max(1000, height + 40))
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {png}")


def main():
    work = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    fig1 = fig1_store(work / "nakerst-fig1")
    # kη = 0.01 (index 24), σ = 9.0 (index 216): the critical damping at g = 0.9
    shoot(fig1, HERE / "nakerst-fig1.png", (24, 216))
    tr = train_store(work / "train-digits")
    shoot(tr, HERE / "train-digits.png", (2, 2))


if __name__ == "__main__":
    main()
