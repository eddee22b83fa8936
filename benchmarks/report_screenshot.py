"""Look at a report as a reader does: report.html rendered by headless Chromium at a given width.

    python benchmarks/report_screenshot.py runs/demo/report.html --output shots/ [--width 1400]

Writes shots/report-1400.png (the whole page) and shots/report-1400-NN.png (the page cut into
screens of 1,000 px), to be looked at: every figure's text should read at that width. Needs a
Chromium (`apt-get install chromium`) and Pillow (a dependency of matplotlib).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

SCREEN_HEIGHT = 1000
PAGE_HEIGHT = 30_000  # taller than any report: the empty rest is cut off


def screenshot(page: Path, width: int, output: Path) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no Chromium found; install one (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:  # a throwaway profile: nothing of the user's is read or kept
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={width},{PAGE_HEIGHT}",
                f"--screenshot={output}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    return output


def trim_and_cut(shot: Path) -> list[Path]:
    """Cut the blank end off the page, then the page into screens."""
    image = Image.open(shot).convert("RGB")
    content = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    image = image.crop((0, 0, image.width, min(image.height, content[3] + 20)))
    image.save(shot)
    screens = []
    for number, top in enumerate(range(0, image.height, SCREEN_HEIGHT)):
        path = shot.with_name(f"{shot.stem}-{number:02d}.png")
        image.crop((0, top, image.width, min(image.height, top + SCREEN_HEIGHT))).save(path)
        screens.append(path)
    return screens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.html")
    parser.add_argument("--output", type=Path, required=True, help="folder for the screenshots")
    parser.add_argument("--width", type=int, default=1400, help="browser window width in px")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    shot = screenshot(args.report, args.width, args.output / f"report-{args.width}.png")
    screens = trim_and_cut(shot)
    print(f"{shot}: {Image.open(shot).size[1]} px tall, {len(screens)} screens of {SCREEN_HEIGHT} px: {screens[0].name} ...")


if __name__ == "__main__":
    main()
