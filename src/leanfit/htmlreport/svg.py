"""Charts as inline SVG text: line and step charts, horizontal bars, a heatmap.

Everything is drawn here, in plain SVG elements (no script, no font files, no
external reference), so a report opens offline in any browser. Each chart is one
``<svg>`` with a ``viewBox``; the page scales it to its column.

>>> svg = line_chart([Series("y = x", [0, 1], [0, 1])], Frame("x", "y", (0, 1), (0, 1)))
>>> svg.startswith("<svg") and "polyline" in svg and "y = x" in svg
True
>>> nice_ticks(0, 1), nice_ticks(0.37, 0.52)
([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], [0.4, 0.45, 0.5])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
WIDTH, HEIGHT = 560, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 18, 14, 46
INK, GRID, MUTED = "#222", "#e3e3e3", "#666"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]``, about ``count`` of them."""
    if not high > low:
        return [float(low)]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = [round((first + i) * step, 12) for i in range(count * 3)]
    return [t for t in ticks if t <= high + step * 1e-9]


def number(value: float) -> str:
    """A tick label: short, no trailing zeros."""
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2g}"
    return f"{value:.4g}"


@dataclass
class Frame:
    """The plot area: axis titles, data ranges and tick labels."""

    x_title: str
    y_title: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    x_format: Callable[[float], str] = number
    y_format: Callable[[float], str] = number
    width: int = WIDTH
    height: int = HEIGHT

    def __post_init__(self) -> None:
        for name in ("x_range", "y_range"):
            low, high = getattr(self, name)
            if not high > low:  # a flat series still gets a visible range
                pad = abs(low) * 0.1 or 1.0
                setattr(self, name, (low - pad, high + pad))

    def x(self, value: float) -> float:
        low, high = self.x_range
        return LEFT + (value - low) / (high - low) * (self.width - LEFT - RIGHT)

    def y(self, value: float) -> float:
        low, high = self.y_range
        return self.height - BOTTOM - (value - low) / (high - low) * (self.height - TOP - BOTTOM)

    def axes(self) -> list[str]:
        """Grid lines, ticks, tick labels and axis titles."""
        right, bottom = self.width - RIGHT, self.height - BOTTOM
        out = []
        for t in nice_ticks(*self.x_range):
            x = self.x(t)
            out.append(_line(x, TOP, x, bottom, GRID))
            out.append(_text(x, bottom + 16, self.x_format(t), anchor="middle"))
        for t in nice_ticks(*self.y_range):
            y = self.y(t)
            out.append(_line(LEFT, y, right, y, GRID))
            out.append(_text(LEFT - 6, y + 4, self.y_format(t), anchor="end"))
        out.append(
            f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" '
            f'fill="none" stroke="{MUTED}"/>'
        )
        out.append(_text((LEFT + right) / 2, self.height - 8, self.x_title, anchor="middle"))
        middle = (TOP + bottom) / 2
        out.append(_text(14, middle, self.y_title, anchor="middle", rotate=(-90, 14, middle)))
        return out


@dataclass
class Series:
    """One line: ``step`` draws it as a histogram outline (``x`` then holds the edges,
    one more than ``y``), filled when ``fill``."""

    name: str
    x: Sequence[float]
    y: Sequence[float | None]
    color: str = ""
    dashed: bool = False
    step: bool = False
    fill: bool = False
    markers: bool = False


@dataclass
class Band:
    """A shaded span of x (a stage of a run) with its label."""

    label: str
    start: float
    end: float


@dataclass
class Extras:
    """What a line chart draws besides its series."""

    bands: list[Band] = field(default_factory=list)
    hlines: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    legend: str = "top right"  # or "bottom right", "top left", "" for none
    note: str = ""  # a line of text at the top right of the plot area


def line_chart(series: list[Series], frame: Frame, extras: Extras | None = None) -> str:
    """Lines (or step outlines) over shaded bands, with horizontal reference lines."""
    extras = extras or Extras()
    body = [*_bands(extras.bands, frame), *frame.axes()]
    for i, s in enumerate(series):
        s.color = s.color or PALETTE[i % len(PALETTE)]
        body += _series(s, frame)
    for y, label in extras.hlines:
        py = frame.y(y)
        body.append(_line(LEFT, py, frame.width - RIGHT, py, "#c00", dash="6 4", width=1.5))
        body.append(_text(frame.width - RIGHT - 4, py - 5, label, anchor="end", color="#c00"))
    if extras.note:
        body.append(
            _text(frame.width - RIGHT - 6, TOP + 14, extras.note, anchor="end", color="#c00")
        )
    if extras.legend and any(s.name for s in series):
        body += _legend(series, frame, extras.legend)
    return _svg(frame.width, frame.height, body)


def _series(s: Series, frame: Frame) -> list[str]:
    if s.step:
        points = [(frame.x(s.x[0]), frame.y(frame.y_range[0]))]
        for left, right, value in zip(s.x, s.x[1:], s.y):
            points += [(frame.x(left), frame.y(value or 0)), (frame.x(right), frame.y(value or 0))]
        points.append((frame.x(s.x[-1]), frame.y(frame.y_range[0])))
    else:
        points = [(frame.x(x), frame.y(y)) for x, y in zip(s.x, s.y) if y is not None]
    if not points:
        return []
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash = ' stroke-dasharray="5 4"' if s.dashed else ""
    fill = f'fill="{s.color}" fill-opacity="0.25"' if s.fill else 'fill="none"'
    out = [f'<polyline points="{coords}" {fill} stroke="{s.color}" stroke-width="2"{dash}/>']
    if s.markers:
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{s.color}"/>' for x, y in points]
    return out


def _bands(bands: list[Band], frame: Frame) -> list[str]:
    out = []
    for i, band in enumerate(bands):
        x0, x1 = frame.x(band.start), max(frame.x(band.end), frame.x(band.start) + 1)
        color = PALETTE[i % len(PALETTE)]
        out.append(
            f'<rect x="{x0:.1f}" y="{TOP}" width="{x1 - x0:.1f}" '
            f'height="{frame.height - TOP - BOTTOM}" fill="{color}" fill-opacity="0.12"/>'
        )
        if x1 - x0 > 7 * len(band.label):
            out.append(_text(x0 + 3, frame.height - BOTTOM - 5, band.label, color=MUTED))
    return out


def _legend(series: list[Series], frame: Frame, where: str) -> list[str]:
    out = []
    x = frame.width - RIGHT - 8 - 7 * max(len(s.name) for s in series) - 22
    x = LEFT + 14 if "left" in where else x
    top = frame.height - BOTTOM - 16 * len(series) - 12 if "bottom" in where else TOP
    for i, s in enumerate(series):
        y = top + 14 + 16 * i
        dash = "5 4" if s.dashed else ""
        out.append(_line(x, y - 4, x + 16, y - 4, s.color, dash=dash, width=2))
        out.append(_text(x + 21, y, s.name))
    width = 7 * max(len(s.name) for s in series) + 30
    box = (
        f'<rect x="{x - 6}" y="{top + 2}" width="{width}" height="{16 * len(series) + 6}" '
        'fill="#fff" fill-opacity="0.85" stroke="#ccc"/>'
    )
    return [box, *out]


def bar_chart(labels: list[str], values: list[float], title: str, fmt=number) -> str:
    """Horizontal bars from a zero line (negative values to its left), a label each."""
    rows = max(len(values), 1)
    height = TOP + 22 * rows + BOTTOM
    label_width = min(260, 7 * max((len(s) for s in labels), default=4) + 10)
    low, high = min(0.0, *values), max(0.0, *values)
    frame = Frame(title, "", (low, high), (0, rows), x_format=fmt, height=height)
    left, right = LEFT + label_width, frame.width - RIGHT - 56

    def x(value: float) -> float:
        return left + (value - frame.x_range[0]) / (frame.x_range[1] - frame.x_range[0]) * (
            right - left
        )

    body = []
    for t in nice_ticks(*frame.x_range):
        body.append(_line(x(t), TOP, x(t), height - BOTTOM, GRID))
        body.append(_text(x(t), height - BOTTOM + 16, fmt(t), anchor="middle"))
    for i, (label, value) in enumerate(zip(labels, values)):
        y = TOP + 22 * i + 4
        x0, x1 = sorted((x(0), x(value)))
        color = PALETTE[0] if value >= 0 else PALETTE[3]
        body.append(
            f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="15" fill="{color}"/>'
        )
        body.append(_text(left - 6, y + 12, _short(label, label_width // 7), anchor="end"))
        body.append(_text(right + 4, y + 12, fmt(value), color=MUTED))
    body.append(_line(x(0), TOP, x(0), height - BOTTOM, INK))
    body.append(_text((left + right) / 2, height - 8, title, anchor="middle"))
    return _svg(frame.width, height, body)


def heatmap(matrix: list[list[float]], labels: list[str], x_title: str, y_title: str) -> str:
    """A square grid of counts shaded by their share of the row (a confusion matrix)."""
    k = len(matrix)
    label_width = min(120, 7 * max(len(s) for s in labels) + 10)
    cell = max(14, min(90, (WIDTH - LEFT - label_width - RIGHT) // max(k, 1)))
    left, top = LEFT + label_width, TOP + 20
    width, height = left + cell * k + RIGHT, top + cell * k + BOTTOM
    body = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, value in enumerate(row):
            share = value / total
            x, y = left + j * cell, top + i * cell
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{PALETTE[0]}" '
                f'fill-opacity="{0.05 + 0.9 * share:.3f}" stroke="#fff"/>'
            )
            if cell >= 40:
                color = "#fff" if share > 0.55 else INK
                body.append(
                    _text(x + cell / 2, y + cell / 2, f"{value:,.0f}", anchor="middle", color=color)
                )
                body.append(
                    _text(
                        x + cell / 2,
                        y + cell / 2 + 14,
                        f"{share:.1%}",
                        anchor="middle",
                        color=color,
                        size=10,
                    )
                )
        body.append(
            _text(left - 6, top + i * cell + cell / 2 + 4, _short(labels[i], 16), anchor="end")
        )
    for j, label in enumerate(labels):
        body.append(_text(left + j * cell + cell / 2, top - 6, _short(label, 10), anchor="middle"))
    body.append(_text(left + cell * k / 2, TOP + 2, x_title, anchor="middle", color=MUTED))
    middle = top + cell * k / 2
    body.append(_text(14, middle, y_title, anchor="middle", rotate=(-90, 14, middle), color=MUTED))
    return _svg(width, height, body)


def _svg(width: float, height: float, body: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" font-family="sans-serif" font-size="12">'
        + "".join(body)
        + "</svg>"
    )


def _line(x1, y1, x2, y2, color: str, *, dash: str = "", width: float = 1) -> str:
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
        f'stroke-width="{width}"{dashed}/>'
    )


def _text(
    x,
    y,
    text: str,
    *,
    anchor: str = "start",
    color: str = INK,
    size: int = 12,
    rotate: tuple | None = None,
) -> str:
    turn = f' transform="rotate({rotate[0]} {rotate[1]:.1f} {rotate[2]:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}" '
        f'font-size="{size}"{turn}>{escape(str(text))}</text>'
    )


def _short(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"
