"""fits.report: one self-contained HTML page; rendered by a real browser when one is
installed (Debian's chromium, headless)."""
import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fits import linksynth, report

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "example-2rank"


@pytest.fixture(scope="module")
def links_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    a = linksynth.make_cluster(8, groups=[4, 4], seed=1)
    b = linksynth.make_cluster(8, groups=[4, 4], seed=1, slow_nodes={2: 2.0},
                               slow_links={(0, 1): 2.0})
    return (linksynth.write_run(d / "before", a, seed=2),
            linksynth.write_run(d / "after", b, seed=3))


def _self_contained(text):
    # nothing fetched: no src/href to another place, no scripts, no @import / url()
    assert not re.search(r'(src|href)\s*=\s*"(?!data:|#)', text)
    assert "<script" not in text and "@import" not in text and "url(" not in text
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    for p in pngs:
        assert base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n"
    return len(pngs)


def test_links_report_with_comparison(links_runs, tmp_path):
    out = tmp_path / "r.html"
    assert report.main([str(links_runs[0]), str(links_runs[1]), "--out", str(out)]) == 0
    text = out.read_text()
    assert _self_contained(text) == 2 + 2 + 1  # heatmaps x 2 runs + comparison plot
    assert "Suspect nodes" in text and "n0002" in text and "Suspect links" in text
    assert "Comparison" in text and "regression(s) past 5%" in text
    assert "No suspect node or link." in text  # the healthy run


def test_sweep_report_has_headlines_table_and_fit_plots(tmp_path):
    out = tmp_path / "s.html"
    assert report.main([str(EXAMPLE), "--out", str(out)]) == 0
    text = out.read_text()
    assert _self_contained(text) == len(list((EXAMPLE / "plots").glob("*.png")))
    assert "Headline constants per topology" in text and "pingpong" in text


def test_bad_input_exits_2_and_writes_nothing(links_runs, tmp_path, capsys):
    out = tmp_path / "x.html"
    other = linksynth.write_run(tmp_path / "four", linksynth.make_cluster(4, seed=0))
    assert report.main([str(links_runs[0]), str(other), "--out", str(out)]) == 2
    assert "different layouts" in capsys.readouterr().err
    assert report.main([str(links_runs[0])] * 3 + ["--out", str(out)]) == 2
    assert report.main([str(links_runs[0]), "--out", str(tmp_path / "x.txt")]) == 2
    assert report.main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert report.main([str(links_runs[0]), "--out",
                        str(links_runs[0] / "points.jsonl")]) == 2
    assert not out.exists()
    out.write_text("old")
    assert report.main([str(links_runs[0]), "--out", str(out)]) == 2
    assert out.read_text() == "old"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install "
                                             "chromium) to render the report")
def test_report_renders_in_a_real_browser(links_runs, tmp_path):
    """Headless chromium draws the page: the screenshot has the header's dark blue
    band on top and the heatmaps' colours below (not a blank or broken page)."""
    from PIL import Image
    out = tmp_path / "r.html"
    assert report.main([str(links_runs[1]), "--out", str(out)]) == 0
    png = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", "--window-size=1280,2400",
           f"--screenshot={png}", out.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert png.exists(), "chromium wrote no screenshot"
    im = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert im.shape[:2] == (2400, 1280)
    header = im[10:60, 100:1100]
    assert np.abs(header.mean(axis=(0, 1)) - [0x1f, 0x3a, 0x5f]).max() < 25
    body = im[600:2400]
    # viridis heatmaps: many distinct colours, and yellow-green cells present
    colours = {tuple(c) for c in body[::7, ::7].reshape(-1, 3)}
    assert len(colours) > 200
    assert ((body[..., 0] > 180) & (body[..., 1] > 180) & (body[..., 2] < 100)).sum() > 500


def test_two_constants_files_report_their_comparison(tmp_path):
    from fits import constants
    doc = constants.load(EXAMPLE / "constants.json")
    # x10: the example's p2p β interval is wide ([18, 163] ps/B), so a tripled β would
    # still overlap it; ten times puts the intervals apart (as in test_compare)
    doc["topologies"]["intra"]["p2p"]["beta"] *= 10
    doc["topologies"]["intra"]["p2p"]["beta_ci"] = [
        10 * v for v in doc["topologies"]["intra"]["p2p"]["beta_ci"]]
    worse = tmp_path / "worse.json"
    constants.save(doc, worse)
    out = tmp_path / "c.html"
    assert report.main([str(EXAMPLE / "constants.json"), str(worse), "--out",
                        str(out)]) == 0
    text = out.read_text()
    assert _self_contained(text) == 1  # the comparison plot
    assert "Constants file: worse.json" in text and "REGRESSION" in text
