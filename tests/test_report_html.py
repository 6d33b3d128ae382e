"""`cervixbatch report --format html`: a self-contained page of a real processed batch,
checked as text and, where Chromium is installed, as a browser renders it."""

from __future__ import annotations

import html
import json
import re
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import cv2
import pytest
from support.report import ODD_NAME, PATIENT, Batch, build_batch, drop_batch, run_cli
from support.tools import require_executable


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, analytic_models: dict[str, Path]) -> Batch:
    return build_batch(tmp_path_factory.mktemp("report_html"), analytic_models)


def render(batch: Batch, page: Path, *args: str) -> str:
    code, _, err = run_cli(batch.config, "report", "--format", "html", "--output", str(page), *args)
    assert code == 0, err
    return page.read_text(encoding="utf-8")


def chromium_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran and its images loaded, from headless Chromium."""
    chromium = require_executable(
        "chromium", "chromium-browser", install="apt-get install chromium"
    )
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def tile_value(dom: str, status: str) -> int:
    match = re.search(
        rf'class="tile st-{status}"><div class="label">{status}</div>'
        r'<div class="value">([\d,]+)</div>',
        dom,
    )
    assert match, f"no {status} tile"
    return int(match.group(1).replace(",", ""))


def test_html_report_renders_in_chromium_with_every_thumbnail(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """Headless Chromium opens the page from disk: every thumbnail loads and the summary
    counts are the database's."""
    config = make_config()
    drop_batch(tmp_path / "inbox")
    code, _, err = run_cli(config, "process", str(tmp_path / "inbox"))
    assert code == 0, err
    page = tmp_path / "site" / "report.html"
    code, _, err = run_cli(config, "report", "--format", "html", "--output", str(page))
    assert code == 0, err
    dom = chromium_dom(page, tmp_path / "chromium-profile")
    check = re.search(
        r'<div id="thumb-check" hidden="" data-total="(\d+)" data-loaded="(\d+)">'
        r"(.*?)</div>",
        dom,
    )
    assert check, "the page's load handler did not run"
    images = json.loads(html.unescape(check.group(3)))
    assert int(check.group(1)) == int(check.group(2)) == len(images) == 6
    assert all(image["naturalWidth"] > 0 for image in images)
    with sqlite3.connect(tmp_path / "state" / "cervixbatch.db") as connection:
        counts = dict(connection.execute("SELECT status, count(*) FROM inputs GROUP BY status"))
    assert tile_value(dom, "done") == counts["done"] == 5
    assert tile_value(dom, "rejected") == counts["rejected"] == 2
    assert tile_value(dom, "failed") == 0
    assert 'id="thumb-warning" class="warning" hidden=""' in dom
    assert "5 of 6 images" not in dom and "6 of 6 images, 2 of 2 not processed" in dom


def test_html_escapes_file_names(batch: Batch, tmp_path: Path) -> None:
    """A file name with `<b>&"` is shown escaped, and the only script is the page's own."""
    text = render(batch, tmp_path / "report.html")
    assert html.escape(ODD_NAME) in text
    assert ODD_NAME not in text and "<b>&" not in text
    assert len(re.findall(r"<script\b", text)) == 1
    nonce = re.search(r"script-src 'nonce-([\w-]+)'", text)
    assert nonce and f'<script nonce="{nonce.group(1)}">' in text


def test_html_shows_no_patient_data_unless_asked(batch: Batch, tmp_path: Path) -> None:
    """PatientName never reaches the page by default; --show-patient reads it from the file."""
    text = render(batch, tmp_path / "report.html")
    family = PATIENT.split("^")[0]
    assert family not in text and PATIENT not in text
    assert "DICOM study <code>1.2." in text  # UIDs are fine
    shown = render(batch, tmp_path / "with-patient.html", "--show-patient")
    assert f'<span class="patient">{PATIENT}</span>' in shown


def test_html_is_self_contained_and_links_relatively(batch: Batch) -> None:
    """No network resource; small thumbnails beside the page; relative links that resolve;
    cards grouped by day and DICOM study; rejected inputs listed with their reasons."""
    page = batch.root / "site" / "report.html"
    text = render(batch, page)
    assert "default-src 'none'" in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    thumbs = sorted((page.parent / "report_files").glob("*.jpg"))
    assert len(thumbs) == 6
    for thumb in thumbs:
        image = cv2.imread(str(thumb))
        assert image is not None and max(image.shape[:2]) <= 360
    targets = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert targets and not any(t.startswith(("file:", "/")) for t in targets)
    for target in targets:
        assert (page.parent / unquote(html.unescape(target))).is_file(), target
    assert text.count('<section class="day">') == 2
    assert "<h2>2024-03-02 " in text and "<h2>2024-03-01 " in text
    assert text.count("DICOM study <code>") == 1 and "frame 2/2" in text
    assert "<code>corrupt</code>" in text and "<code>unsupported_format</code>" in text


def test_html_limit_and_filters_apply_to_the_sheet(batch: Batch, tmp_path: Path) -> None:
    """--status and --limit narrow the page's items while the summary counts every match."""
    text = render(batch, tmp_path / "r.html", "--status", "rejected")
    assert "No processed images match." in text and "<code>corrupt</code>" in text
    text = render(batch, tmp_path / "r2.html", "--limit", "1")
    assert "latest 1 of 7 inputs shown" in text
    assert '<div class="value">7</div>' in text


def test_html_needs_an_output_file(batch: Batch) -> None:
    """--format html without --output is a usage error (the page has files beside it)."""
    code, _, err = run_cli(batch.config, "report", "--format", "html")
    assert code == 2 and "--output" in err
