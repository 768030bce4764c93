"""Screenshot DIR/report.html in a real headless browser and save DIR/report.png.

    python scripts/screenshot_report.py runs/demo [--width 1280] [--height 4200]

Needs Debian's chromium (`apt-get install -y chromium`). The page is loaded from file:// with the network
disabled, so the screenshot also proves the report opens offline. Prints one JSON line with the result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def screenshot(report: Path, png: Path, *, width: int, height: int, timeout: float = 90.0) -> None:
    browser = find_browser()
    if browser is None:
        raise SystemExit("screenshot_report: no chromium found; install it with `apt-get install -y chromium` "
                         f"(looked for {', '.join(BROWSERS)})")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
               f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               f"--window-size={width},{height}", "--virtual-time-budget=5000", f"--screenshot={png}",
               report.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.is_file():
        raise SystemExit(f"screenshot_report: chromium failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", help="run directory containing report.html")
    ap.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels")
    ap.add_argument("--height", type=int, default=4200, help="viewport height (the screenshot is this tall)")
    args = ap.parse_args(argv)
    report = Path(args.dir) / "report.html"
    if not report.is_file():
        print(f"screenshot_report: no report at {report} (run `qstar demo` or `qstar report DIR` first)",
              file=sys.stderr)
        return 2
    png = Path(args.dir) / "report.png"
    png.unlink(missing_ok=True)
    screenshot(report, png, width=args.width, height=args.height)
    print(json.dumps({"report": str(report), "png": str(png), "bytes": png.stat().st_size}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
