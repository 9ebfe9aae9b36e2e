"""The report in a real browser: headless Chromium (Debian packages chromium +
chromium-driver, `scripts/install_system_deps.sh --browser`) opens the page from a file://
URL; there must be no console errors, no request other than the page and its data: URIs,
every <img> must decode, and every figure's box in the full-page screenshot must hold a
drawn plot. A negative control first proves the harness sees requests and errors.

Set SCALINGLAB_REPORT_SHOT=path.png to keep the screenshot.
"""

from __future__ import annotations

import io
import os

import pytest

from scalinglab.report import build_report
from scalinglab.report.browser import find_chromium, visit

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        find_chromium() is None, reason="headless chromium not installed (scripts/install_system_deps.sh --browser)"
    ),
]


def ink_stats(shot, box: dict) -> tuple[float, int]:
    """(fraction of non-white pixels, number of distinct colours) inside a CSS-px box."""
    import numpy as np
    from PIL import Image

    im = Image.open(io.BytesIO(shot)).convert("RGB")
    x0, y0 = int(box["x"]) + 2, int(box["y"]) + 2
    px = np.asarray(im.crop((x0, y0, x0 + int(box["width"]) - 4, y0 + int(box["height"]) - 4))).reshape(-1, 3)
    ink = float((px.min(axis=1) < 200).mean())
    packed = (px[:, 0].astype(np.int64) << 16) | (px[:, 1].astype(np.int64) << 8) | px[:, 2]
    return ink, len(np.unique(packed))


def test_harness_detects_requests_and_errors(tmp_path):
    """Negative control: a page with a remote image and a console error must be caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
        '<script>console.error("boom")</script></body></html>'
    )
    v = visit(bad, height=400)
    assert "http://127.0.0.1:9/x.png" in v.network_requests
    assert any("boom" in e for e in v.errors)
    assert v.images and v.images[0]["naturalWidth"] == 0  # a broken image is seen as broken


def test_report_opens_offline_and_shows_every_figure(tmp_path):
    from test_report_html import make_run

    d = make_run(tmp_path)
    page = build_report(d)
    v = visit(page, width=1280)
    if os.environ.get("SCALINGLAB_REPORT_SHOT"):
        os.makedirs(os.path.dirname(os.path.abspath(os.environ["SCALINGLAB_REPORT_SHOT"])), exist_ok=True)
        with open(os.environ["SCALINGLAB_REPORT_SHOT"], "wb") as f:
            f.write(v.screenshot)

    assert v.errors == []
    assert v.network_requests == []
    assert v.requests[0] == page.resolve().as_uri()

    assert len(v.images) == 5
    from PIL import Image

    shot = Image.open(io.BytesIO(v.screenshot))
    assert shot.size == (1280, v.height) and v.height > 2000
    for img in v.images:
        assert img["complete"] and img["naturalWidth"] > 500 and img["naturalHeight"] > 300, img
        assert img["width"] > 300 and img["height"] > 150, img  # laid out at a readable size
        ink, colours = ink_stats(v.screenshot, img)
        # A matplotlib plot has axes, ticks, text and coloured lines: some ink, many colours
        # (anti-aliasing); an empty or broken image is a flat white or grey box.
        assert 0.01 < ink < 0.9 and colours > 50, (img["alt"], ink, colours)
    # The page background around the figures is not mistaken for a figure.
    ink, colours = ink_stats(v.screenshot, {"x": 0, "y": v.images[0]["y"], "width": 30, "height": 200})
    assert colours < 5


def test_report_command_screenshot(tmp_path):
    import json

    from test_report_figures_cli import _app
    from test_report_html import make_run
    from typer.testing import CliRunner

    d = make_run(tmp_path)
    res = CliRunner().invoke(_app(), ["report", str(d), "--screenshot", str(tmp_path / "shot" / "r.png"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["browser_errors"] == [] and out["network_requests"] == []
    assert (tmp_path / "shot" / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
