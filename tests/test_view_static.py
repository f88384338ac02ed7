"""dynsim.view.static: the self-contained page file and the notebook view; in a real browser,
the static pages of both stores (selectors and clicks checked against the stores)."""
import re

import processes
import pytest

pytest.importorskip("bokeh")
import viewpages as vp  # noqa: E402

import dynsim  # noqa: E402
from dynsim import view as dview  # noqa: E402


@pytest.mark.slow
def test_static_html_is_self_contained(land_store, tmp_path):
    path = dview.save_html(land_store, tmp_path / "page.html")
    html = path.read_text()
    assert "Bokeh" in html and '"sel-momentum"' in html
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']https?:", html)   # nothing fetched
    assert not list(tmp_path.glob("*.tmp"))
    shown = dynsim.view(dynsim.open_result(land_store))
    assert shown._repr_html_().startswith("<iframe srcdoc=") and "sel-var" in shown.html


@vp.browser_test
@pytest.mark.slow
def test_browser_static_pages(land_store, train_store, browser, tmp_path):
    for store, check, name in ((land_store, lambda: vp.check_landscape_page(browser, land_store, live=False),
                                "static-landscape"),
                               (train_store, lambda: vp.check_training_page(browser, train_store), "static-training")):
        page = tmp_path / f"{name}.html"
        processes.run([*processes.DYNSIM, "view", str(store), "--html", str(page)])
        browser.get(page.as_uri())
        check()
        vp.shot(browser, tmp_path, name)
