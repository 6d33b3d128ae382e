"""An HTML contact sheet of synth-v2 photos with their masks drawn, to look at them side by
side with what real colposcopy looks like.

Outlines are drawn by the report's own overlay renderer (cervix green, lesion yellow);
each tile is captioned with the photo's settings and mask fractions. ``--png`` also
renders the page to a PNG with headless Chromium, where it is installed.

    .venv/bin/python benchmarks/synth_contact_sheet.py --out /tmp/sheet [--count 48] [--png]
"""

from __future__ import annotations

import argparse
import html
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

from cervixbatch.outputs.overlay import draw_overlay
from cervixbatch.tools.synth.v1 import parse_size
from cervixbatch.tools.synth.v2 import Selection, make_sample, parse_features

TILE = 360
COLUMNS = 6
STYLE = """
body { font: 12px sans-serif; background: #222; color: #ddd; margin: 8px; }
.grid { display: grid; grid-template-columns: repeat(COLUMNS, TILEpx); gap: 6px; }
figure { margin: 0; } img { width: TILEpx; display: block; }
figcaption { padding: 2px 0 4px; line-height: 1.3; }
""".replace("COLUMNS", str(COLUMNS)).replace("TILE", str(TILE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--only", default="", help="synth-v2 settings every photo shows")
    parser.add_argument("--hold-out", default="", help="synth-v2 settings no photo shows")
    parser.add_argument("--png", action="store_true", help="render to sheet.png (Chromium)")
    args = parser.parse_args()
    size = parse_size(args.size)
    selection = Selection(hold_out=parse_features(args.hold_out), only=parse_features(args.only))
    assets = args.out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    figures = []
    for i in range(args.count):
        sample = make_sample(np.random.default_rng([args.seed, i]), size, selection=selection)
        overlay = draw_overlay(sample.rgb, sample.cervix_mask, sample.lesion_mask, max_side=TILE)
        name = f"synth_{i:05d}.jpg"
        cv2.imwrite(str(assets / name), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        cervix = float((sample.cervix_mask > 0).mean())
        lesion = float((sample.lesion_mask > 0).sum()) / max(1, int((sample.cervix_mask > 0).sum()))
        caption = f"#{i} cervix {cervix:.0%} · lesion {lesion:.0%}<br>" + html.escape(
            ", ".join(sorted(sample.features))
        )
        figures.append(
            f'<figure><img src="assets/{name}"><figcaption>{caption}</figcaption></figure>'
        )
    page = (
        "<!doctype html><meta charset=utf-8><title>synth v2 contact sheet</title>"
        f"<style>{STYLE}</style><h1>synth v2: {args.count} photos, seed {args.seed}</h1>"
        "<p>cervix outline green, lesion outline yellow</p>"
        f'<div class="grid">{"".join(figures)}</div>'
    )
    index = args.out / "index.html"
    index.write_text(page, encoding="utf-8")
    print(index)
    if args.png:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            raise SystemExit("no chromium on PATH: open index.html in a browser instead")
        rows = -(-args.count // COLUMNS)
        height = 90 + rows * (TILE * 3 // 4 + 48)
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={args.out / 'sheet.png'}",
                f"--window-size={COLUMNS * (TILE + 6) + 16},{height}",
                index.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
        )
        print(args.out / "sheet.png")


if __name__ == "__main__":
    main()
