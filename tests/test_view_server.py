"""dynsim.view.server: ``dynsim view DIR`` served and driven in a real browser -- a selector
changed and checked against the store, a click checked against dynsim computed here, the
server stopped with SIGINT."""
import pytest

pytest.importorskip("bokeh")
import viewpages as vp  # noqa: E402


@vp.browser_test
@pytest.mark.slow
def test_browser_server_landscape(land_store, browser, tmp_path):
    vp.serve_and_check(browser, land_store, lambda b: vp.check_landscape_page(b, land_store, live=True), tmp_path,
                     "server-landscape")


@vp.browser_test
@pytest.mark.slow
def test_browser_server_training(train_store, browser, tmp_path):
    vp.serve_and_check(browser, train_store, lambda b: vp.check_training_page(b, train_store), tmp_path,
                     "server-training")
