"""The Grafana dashboard's panels drawn as one SVG from a live Prometheus (each panel's queries
over the run, as Grafana would plot them), for the README. Written by test_prometheus.py when
TOLLGATE_DASHBOARD_FIGURE names a file."""

from __future__ import annotations

import math
import re
from html import escape
from pathlib import Path
from typing import Any

from tests.integration.prometheus_server import Prometheus

WIDTH, HEIGHT, MARGIN = 560, 230, 12
PLOT_LEFT, PLOT_TOP, PLOT_BOTTOM = 58, 34, 62
PALETTE = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a")
Series = tuple[str, list[tuple[float, float]]]


def render(prometheus: Prometheus, panels: list[dict[str, Any]], start: float, end: float) -> str:
    columns = 2
    rows = math.ceil(len(panels) / columns)
    total_w, total_h = columns * (WIDTH + MARGIN) + MARGIN, rows * (HEIGHT + MARGIN) + MARGIN + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
        'font-family="Inter, Helvetica, Arial, sans-serif" font-size="11">',
        f'<rect width="{total_w}" height="{total_h}" fill="#111217"/>',
        f'<text x="{MARGIN}" y="24" fill="#ccccdc" font-size="16">tollgate — a live run '
        f"({end - start:.0f} s: intake, worker, both sinks, demo traffic)</text>",
    ]
    for index, panel in enumerate(panels):
        x = MARGIN + (index % columns) * (WIDTH + MARGIN)
        y = 30 + MARGIN + (index // columns) * (HEIGHT + MARGIN)
        series = [
            item for target in panel["targets"] for item in _query(prometheus, target, start, end)
        ]
        parts.append(_panel(panel["title"], panel["fieldConfig"]["defaults"]["unit"], series, x, y))
    parts.append("</svg>")
    return "\n".join(parts)


def write(
    path: Path, prometheus: Prometheus, panels: list[dict[str, Any]], start: float, end: float
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(prometheus, panels, start, end) + "\n")


def _query(
    prometheus: Prometheus, target: dict[str, Any], start: float, end: float
) -> list[Series]:
    step = max((end - start) / 200, 1.0)
    data = prometheus.api(
        "query_range",
        query=target["expr"],
        start=f"{start:.3f}",
        end=f"{end:.3f}",
        step=f"{step:g}",
    )
    found: list[Series] = []
    for result in data["result"]:
        legend = _legend(target.get("legendFormat") or "", result["metric"]) or "series"
        points = [(float(t), float(v)) for t, v in result["values"]]
        found.append((legend, [(t, v) for t, v in points if math.isfinite(v)]))
    return found


def _legend(form: str, labels: dict[str, str]) -> str:
    """Grafana's legend format: each {{label}} replaced by the series' value of it."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), form).strip()


def _panel(title: str, unit: str, series: list[Series], x: float, y: float) -> str:
    plot_w = WIDTH - PLOT_LEFT - 12
    plot_h = HEIGHT - PLOT_TOP - PLOT_BOTTOM
    values = [v for _, points in series for _, v in points]
    times = [t for _, points in series for t, _ in points]
    low, high = min([*values, 0.0]), max([*values, 0.0])
    high = high if high > low else low + 1
    t0, t1 = (min(times), max(times)) if times else (0.0, 1.0)
    t1 = t1 if t1 > t0 else t0 + 1
    out = [
        f'<g transform="translate({x},{y})">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" rx="3" fill="#181b1f" stroke="#2c3235"/>',
        f'<text x="10" y="20" fill="#ccccdc" font-size="13">{escape(title)}</text>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        gy = PLOT_TOP + plot_h * (1 - fraction)
        label = _format(low + (high - low) * fraction, unit)
        out.append(
            f'<line x1="{PLOT_LEFT}" y1="{gy:.1f}" x2="{PLOT_LEFT + plot_w}" y2="{gy:.1f}" '
            'stroke="#2c3235"/>'
            f'<text x="{PLOT_LEFT - 6}" y="{gy + 4:.1f}" fill="#8e8e8e" text-anchor="end">'
            f"{label}</text>"
        )
    for number, (legend, points) in enumerate(series):
        color = PALETTE[number % len(PALETTE)]
        coords = " ".join(
            f"{PLOT_LEFT + (t - t0) / (t1 - t0) * plot_w:.1f},"
            f"{PLOT_TOP + (1 - (v - low) / (high - low)) * plot_h:.1f}"
            for t, v in points
        )
        if coords:
            out.append(
                f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
        if number < 6:
            lx = 10 + (number % 2) * (WIDTH / 2)
            ly = HEIGHT - PLOT_BOTTOM + 26 + (number // 2) * 14
            out.append(
                f'<rect x="{lx}" y="{ly - 8}" width="10" height="3" fill="{color}"/>'
                f'<text x="{lx + 14}" y="{ly - 4}" fill="#ccccdc">{escape(legend[:60])}</text>'
            )
    if not series:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" fill="#8e8e8e">No data</text>')
    out.append("</g>")
    return "".join(out)


def _format(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.3g} %"
    suffix = {"s": " s", "ops": "/s"}.get(unit, "")
    if abs(value) >= 1000:
        return f"{value / 1000:.3g}k{suffix}"
    return f"{value:.3g}{suffix}"
