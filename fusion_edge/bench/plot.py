"""``bench.png``: p50 latency against input size, one line per backend (drawn with OpenCV).

Sizes are evenly spaced on the x axis in order of pixel count; the y axis is logarithmic when
latencies span more than a factor of 20. A thin vertical bar marks p90..p99 at each point. A
backend keeps its colour in every plot; in merged plots (labels "preset backend precision") each
preset gets its own line style and marker, so twelve lines stay tellable apart.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from fusion_edge.bench.environment import device_label

WIDTH, HEIGHT = 1000, 640
LEFT, RIGHT, TOP, BOTTOM = 90, 230, 60, 70
LEGEND_CHARS = 44  # longest legend label drawn; the legend column widens to fit it
# BGR colours, one per backend in BACKENDS order (then cycled).
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img, text, org, scale=0.45, color=(0, 0, 0), thickness=1) -> None:
    cv2.putText(img, text, (int(org[0]), int(org[1])), FONT, scale, color, thickness, cv2.LINE_AA)


def _nice_ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        ticks = []
        for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
            ticks += [m * 10**e for m in (1, 2, 5) if low <= m * 10**e <= high]
        return ticks or [low, high]
    step = 10 ** math.floor(math.log10(max(high - low, 1e-9)))
    for mult in (1, 2, 5, 10):
        if (high - low) / (step * mult) <= 8:
            step *= mult
            break
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step) + 1)]


def render_latency_plot(report) -> bytes:
    """PNG bytes of one run's plot: a line per backend."""
    series: dict[str, list] = {}
    for r in report.rows:
        if r.status == "ok":
            series.setdefault(r.backend, []).append(((r.height, r.width), r.latency_ms))
    sizes = {(r.height, r.width) for r in report.rows}
    precision = "fp16" if report.config["fp16"] else "fp32"
    title = f"p50 latency: {report.model}, batch {report.config['batch']}, {precision}"
    return render_series(series, sizes, title, device_label(report.environment))


def render_series(series: dict[str, list], sizes, title: str, subtitle: str) -> bytes:
    """PNG bytes: one line per series; each point is ((height, width), {"p50":, "p90":, "p99":} in ms).

    Draws a 'nothing measured' panel when no series has a point.
    """
    from fusion_edge.bench.config import BACKENDS

    longest = max((min(len(label), LEGEND_CHARS) for label in series), default=0)
    right = max(RIGHT, 60 + 8 * longest)
    width = WIDTH - RIGHT + right
    img = np.full((HEIGHT, width, 3), 255, np.uint8)
    sizes = sorted(set(sizes), key=lambda s: (s[0] * s[1], s))
    _text(img, title[:100], (LEFT, 25), 0.55)
    _text(img, subtitle[:110], (LEFT, 45), 0.4, (80, 80, 80))
    x0, x1, y0, y1 = LEFT, width - right, HEIGHT - BOTTOM, TOP
    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    points_ms = [lat[k] for pts in series.values() for _, lat in pts for k in ("p50", "p99")]
    if not points_ms:
        _text(img, "no backend ran (see bench.md for the reasons)", (x0 + 40, (y0 + y1) // 2), 0.6, (0, 0, 200))
        return cv2.imencode(".png", img)[1].tobytes()
    low, high = min(points_ms), max(points_ms)
    log = high / max(low, 1e-9) > 20
    if log:
        low, high = 10 ** math.floor(math.log10(low)), 10 ** math.ceil(math.log10(high))
    else:
        low, high = 0.0, high * 1.1

    def ypos(ms: float) -> int:
        frac = (math.log10(ms) - math.log10(low)) / (math.log10(high) - math.log10(low)) if log else ms / high
        return int(y0 - frac * (y0 - y1))

    def xpos(i: int) -> int:
        return int(x0 + (i + 0.5) * (x1 - x0) / len(sizes))

    for tick in _nice_ticks(low, high, log):
        y = ypos(tick)
        cv2.line(img, (x0, y), (x1, y), (225, 225, 225), 1)
        _text(img, f"{tick:g}", (x0 - 8 - 9 * len(f"{tick:g}"), y + 4))
    for i, (h, w) in enumerate(sizes):
        _text(img, f"{h}x{w}", (xpos(i) - 35, y0 + 22))
    _text(img, "input size (H x W)", ((x0 + x1) // 2 - 70, y0 + 50), 0.5)
    _text(img, "ms" + (" (log)" if log else ""), (12, y1 - 20), 0.5)
    groups: list[str] = []
    for k, (label, pts) in enumerate(series.items()):
        backend = next((w for w in label.split() if w in BACKENDS), None)
        index = BACKENDS.index(backend) if backend else k  # a backend keeps its colour across plots
        colour = PALETTE[index % len(PALETTE)]
        group = label.split()[0] if backend and backend != label.split()[0] else ""
        if group not in groups:
            groups.append(group)
        style = groups.index(group) % len(STYLES)
        points = []
        for size, lat in pts:
            x = xpos(sizes.index(tuple(size)))
            points.append((x, ypos(lat["p50"])))
            cv2.line(img, (x, ypos(lat["p90"])), (x, ypos(lat["p99"])), colour, 1)
        points.sort()
        for a, b in zip(points, points[1:]):
            _styled_line(img, a, b, colour, style)
        for point in points:
            _marker(img, point, colour, style)
        ly = y1 + 15 + 22 * k
        _styled_line(img, (x1 + 15, ly - 4), (x1 + 40, ly - 4), colour, style)
        _marker(img, (x1 + 27, ly - 4), colour, style)
        _text(img, label[:LEGEND_CHARS], (x1 + 47, ly), 0.42)
    return cv2.imencode(".png", img)[1].tobytes()


STYLES = ("solid", "dashed", "dotted")  # one per preset in a merged plot, with circle/square/triangle


def _styled_line(img: np.ndarray, a: tuple[int, int], b: tuple[int, int], colour, style: int) -> None:
    if STYLES[style] == "solid":
        cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
        return
    dash, gap = (10, 6) if STYLES[style] == "dashed" else (3, 5)
    length = max(math.hypot(b[0] - a[0], b[1] - a[1]), 1e-9)

    def along(distance: float) -> tuple[int, int]:
        t = min(distance / length, 1.0)
        return int(a[0] + t * (b[0] - a[0])), int(a[1] + t * (b[1] - a[1]))

    start = 0.0
    while start < length:
        cv2.line(img, along(start), along(start + dash), colour, 2, cv2.LINE_AA)
        start += dash + gap


def _marker(img: np.ndarray, p: tuple[int, int], colour, style: int) -> None:
    x, y = p
    if style == 0:
        cv2.circle(img, p, 4, colour, -1, cv2.LINE_AA)
    elif style == 1:
        cv2.rectangle(img, (x - 4, y - 4), (x + 4, y + 4), colour, -1)
    else:
        cv2.fillPoly(img, [np.array([(x, y - 5), (x - 5, y + 4), (x + 5, y + 4)], np.int32)], colour, cv2.LINE_AA)
