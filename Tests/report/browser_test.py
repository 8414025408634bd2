#!/usr/bin/env python3
"""`proctor report` in a real browser: Debian's chromium, headless.

    browser_test.py REPORT_HTML RESULTS_TSV OUT_DIR

Checks that the page renders: the DOM chromium builds has one chart point per ledger row (a circle for
each row with a score, the iterations those of results.tsv), and a screenshot (OUT_DIR/report.png,
1200x2000) that is not blank and shows the chart's colours. Exit 0 on success, 1 on a failed check,
2 when no browser can be found.
"""
import html.parser
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

KEEP_GREEN = (0x1A, 0x7F, 0x37)  # ReportChart.colors[.keep]: the baseline is always a kept point


def browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium(binary, profile, *args):
    # --no-sandbox: CI runs as root, where chromium's own sandbox refuses to start.
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--user-data-dir=" + profile, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


class ChartPoints(html.parser.HTMLParser):
    """The chart's points: elements with class `point` inside <svg class="chart">."""

    def __init__(self):
        super().__init__()
        self.depth = 0  # > 0 inside the chart svg
        self.points = []  # (tag, iteration, classes)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "svg" and "chart" in classes:
            self.depth = 1
            return
        if self.depth:
            if tag == "svg":
                self.depth += 1
            if "point" in classes:
                self.points.append((tag, attrs.get("data-iteration"), classes))

    def handle_endtag(self, tag):
        if self.depth and tag == "svg":
            self.depth -= 1


def ledger(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.endswith("\n") and line.strip():
                rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    return rows


def has_score(text):
    try:
        value = float(text)
    except ValueError:
        return False
    return value == value  # NaN is drawn as "no score"


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = ihdr
    if depth != 8 or color not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {color}, interlace {interlace}")
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        previous = line
    return width, height, bpp, rows


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    report, results, out = sys.argv[1:]
    binary = browser()
    if not binary:
        print("browser test: no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    url = "file://" + os.path.abspath(report)
    failures = []
    with tempfile.TemporaryDirectory(prefix="proctor-chromium-") as profile:
        dom = chromium(binary, profile, "--dump-dom", url)
        if dom.returncode != 0 or "<svg" not in dom.stdout:
            print(dom.stderr[-3000:], file=sys.stderr)
            failures.append(f"--dump-dom exited {dom.returncode} without a chart")
        screenshot = os.path.join(out, "report.png")
        shot = chromium(binary, profile, "--screenshot=" + screenshot, "--window-size=1200,2000",
                        "--hide-scrollbars", url)
        if shot.returncode != 0:
            print(shot.stderr[-3000:], file=sys.stderr)
            failures.append(f"--screenshot exited {shot.returncode}")

    # One point per ledger row, a circle for each scored one, the same iterations.
    parser = ChartPoints()
    parser.feed(dom.stdout)
    rows = ledger(results)
    points = parser.points
    circles = [p for p in points if p[0] == "circle"]
    scored = [r for r in rows if has_score(r.get("score", ""))]
    print(f"ledger rows {len(rows)} (scored {len(scored)}); chart points {len(points)} (circles {len(circles)})")
    if not rows:
        failures.append("the ledger has no rows: nothing to compare")
    if len(points) != len(rows):
        failures.append(f"{len(points)} chart points for {len(rows)} ledger rows")
    if len(circles) != len(scored):
        failures.append(f"{len(circles)} circles for {len(scored)} scored rows")
    if sorted(p[1] for p in points) != sorted(r["iteration"] for r in rows):
        failures.append("the points' iterations are not the ledger's")
    for (_, iteration, classes), row in zip(sorted(points, key=lambda p: int(p[1] or -1)),
                                            sorted(rows, key=lambda r: int(r["iteration"]))):
        if row["status"] not in classes:
            failures.append(f"iteration {iteration}: point {classes}, ledger status {row['status']}")

    # The screenshot: there, not tiny, not one flat colour, with the kept points' green in it.
    screenshot = os.path.join(out, "report.png")
    if not os.path.exists(screenshot):
        failures.append("no screenshot")
    else:
        size = os.path.getsize(screenshot)
        width, height, bpp, pixels = png_pixels(screenshot)
        colours, ink, green = set(), 0, 0
        for line in pixels:
            for i in range(0, len(line), bpp):
                rgb = (line[i], line[i + 1], line[i + 2])
                colours.add(rgb)
                if rgb != (255, 255, 255):
                    ink += 1
                if all(abs(a - b) <= 8 for a, b in zip(rgb, KEEP_GREEN)):
                    green += 1
        print(f"screenshot {screenshot}: {width}x{height}, {size} bytes, {len(colours)} colours, "
              f"{100.0 * ink / (width * height):.1f}% not white, {green} keep-green pixels")
        if size < 20_000:
            failures.append(f"screenshot is only {size} bytes")
        if (width, height) != (1200, 2000):
            failures.append(f"screenshot is {width}x{height}, not 1200x2000")
        if len(colours) < 16 or ink < width * height // 100:
            failures.append("screenshot looks blank")
        if green < 20:
            failures.append("the chart's keep green is nowhere in the screenshot (SVG not drawn?)")

    for failure in failures:
        print("browser test: " + failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
