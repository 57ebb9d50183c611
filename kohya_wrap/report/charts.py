"""The report's charts: metrics.csv rows → inline SVG line charts (loss with its EMA, learning rate).

Pure: data in, SVG out, no files read. The geometry (ticks, scaling, decimation of long runs, epoch
markers) is computed here; the markup comes from templates/chart.svg.j2, rendered with autoescape,
so a label, a class or a series name is escaped wherever it lands.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from markupsafe import Markup

from kohya_wrap.report.templating import render

MAX_DRAWN_POINTS = 1000  # per line of a chart; more are decimated (min/max per bucket, spikes kept)
RAW_COLOUR = "#5b8def"  # the raw loss, drawn faint
EMA_COLOUR = "#d6336c"  # the smoothed loss: a colour nothing else on the page uses (the browser test looks for it)
LR_COLOUR = "#2f9e44"


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    colour: str
    css_class: str
    opacity: float = 1.0
    width: float = 1.6


def finite_points(points: Iterable[tuple[float, float | None]]) -> list[tuple[float, float]]:
    """Drop points whose value is missing, NaN or infinite."""
    return [(float(x), float(y)) for x, y in points if y is not None and math.isfinite(x) and math.isfinite(y)]


def ema(values: Sequence[float], span: float) -> list[float]:
    """Exponential moving average with alpha = 2 / (span + 1), bias-corrected at the start (as
    TensorBoard's smoothing), so the first values are not dragged towards zero."""
    alpha = 2.0 / (span + 1.0)
    out, average, weight = [], 0.0, 0.0
    for value in values:
        average = (1 - alpha) * average + alpha * value
        weight = (1 - alpha) * weight + alpha
        out.append(average / weight)
    return out


def smoothing_span(count: int) -> int:
    """Longer runs get a longer window: 5 points for a short run, up to 100 for thousands of steps."""
    return max(5, min(100, count // 25))


def decimate(points: Sequence[tuple[float, float]], limit: int = MAX_DRAWN_POINTS) -> list[tuple[float, float]]:
    """At most `limit` points: each of limit/2 buckets of consecutive points keeps its lowest and
    highest (in their order), so spikes survive; the first and last points are always kept."""
    if len(points) <= limit:
        return list(points)
    buckets = max(1, (limit - 2) // 2)
    inner = points[1:-1]
    kept: list[tuple[float, float]] = [points[0]]
    size = len(inner) / buckets
    for b in range(buckets):
        chunk = inner[int(b * size) : int((b + 1) * size)]
        if not chunk:
            continue
        low = min(range(len(chunk)), key=lambda i: chunk[i][1])
        high = max(range(len(chunk)), key=lambda i: chunk[i][1])
        for i in sorted({low, high}):
            kept.append(chunk[i])
    kept.append(points[-1])
    return kept


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    k = first
    while k * step <= high + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


def tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        mantissa, exponent = f"{value:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.4g}"


def step_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _domain(values: Sequence[float], robust: bool) -> tuple[float, float, bool]:
    """[low, high] of the values with 5 % padding; with `robust` and many points, a few huge spikes
    do not flatten the rest: the top is capped at the 99th percentile plus half the range below it."""
    low, high = min(values), max(values)
    clipped = False
    if robust and len(values) >= 100:
        ordered = sorted(values)
        q99 = ordered[int(0.99 * (len(ordered) - 1))]
        cap = q99 + 0.5 * (q99 - low)
        if high > cap > low:
            high, clipped = cap, True
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        return low - pad, high + pad, clipped
    pad = (high - low) * 0.05
    return low - pad, high + pad, clipped


def line_chart_svg(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str,
    x_label: str = "step",
    markers: Sequence[tuple[float, str]] = (),
    robust: bool = False,
    chart_id: str = "",
    width: int = 1080,
    height: int = 320,
) -> Markup:
    """An inline SVG line chart: axes with round ticks, one polyline per series (decimated to at most
    MAX_DRAWN_POINTS; a lone point also gets a dot), dashed vertical `markers` (x, label) such as
    epoch starts. Points must already be finite."""
    drawn = [(s, decimate(s.points)) for s in series if s.points]
    left, right, top, bottom = 70, 16, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    frame = {"chart_id": chart_id, "title": title, "width": width, "height": height, "left": left, "top": top}
    if not drawn:
        return render("chart.svg.j2", **frame, empty=True)
    xs = [x for _, points in drawn for x, _ in points]
    ys = [y for s, points in drawn for _, y in s.points]
    x_low, x_high = min(xs), max(xs)
    if x_low == x_high:
        x_low, x_high = x_low - 1, x_high + 1
    y_low, y_high, clipped = _domain(ys, robust)

    def px(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        y = min(max(y, y_low), y_high)
        return top + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    y_ticks = [
        (f"{py(t):.1f}", f"{py(t) + 4:.1f}", tick_label(t)) for t in nice_ticks(y_low, y_high) if y_low <= t <= y_high
    ]
    x_values = [t for t in nice_ticks(x_low, x_high, 8) if x_low <= t <= x_high]
    if all(float(x).is_integer() for x in xs):
        x_values = [t for t in x_values if float(t).is_integer()]
    x_ticks = [(f"{px(t):.1f}", step_label(t)) for t in x_values]
    shown_markers = [
        (f"{px(x):.1f}", f"{px(x) + 3:.1f}", label)
        for x, label in (markers if len(markers) <= 60 else ())
        if x_low <= x <= x_high
    ]
    lines = []
    for s, points in reversed(drawn):
        dot = (f"{px(points[0][0]):.1f}", f"{py(points[0][1]):.1f}") if len(points) == 1 else None
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        lines.append({"series": s, "count": len(points), "coords": coords, "dot": dot})
    legend, legend_x = [], left + plot_w
    for s, _ in reversed(drawn):
        legend_x -= 7 * len(s.name) + 30
        legend.append({"series": s, "x": legend_x, "opacity": max(s.opacity, 0.5)})
    return render(
        "chart.svg.j2",
        **frame,
        empty=False,
        plot_w=plot_w,
        plot_h=plot_h,
        plot_bottom=top + plot_h,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        markers=shown_markers,
        x_label=x_label,
        y_label=y_label,
        x_label_x=left + plot_w / 2,
        y_label_y=top + plot_h / 2,
        lines=lines,
        legend=legend,
        clipped=clipped,
    )


@dataclass(frozen=True)
class MetricRow:
    step: float
    epoch: int | None
    loss: float | None
    lr: float | None
    seconds_per_step: float | None


def _number(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_metrics(text: str) -> list[MetricRow]:
    """metrics.csv → rows; a row without a usable step is skipped, an unreadable loss or lr is None."""
    rows = []
    for record in csv.DictReader(io.StringIO(text)):
        step = _number(record.get("step"))
        if step is None or not math.isfinite(step):
            continue
        epoch = _number(record.get("epoch"))
        rows.append(
            MetricRow(
                step,
                int(epoch) if epoch is not None and math.isfinite(epoch) else None,
                _number(record.get("loss")),
                _number(record.get("lr")),
                _number(record.get("seconds_per_step")),
            )
        )
    return rows


def epoch_markers(rows: Sequence[MetricRow]) -> list[tuple[float, str]]:
    """Where each epoch after the first starts."""
    markers, previous = [], None
    for row in rows:
        if row.epoch is not None and previous is not None and row.epoch != previous:
            markers.append((row.step, f"e{row.epoch}"))
        if row.epoch is not None:
            previous = row.epoch
    return markers


def loss_chart(rows: Sequence[MetricRow]) -> tuple[Markup, str]:
    """(SVG, note) for the loss: raw (faint) and its EMA."""
    points = finite_points((r.step, r.loss) for r in rows)
    skipped = sum(1 for r in rows if r.loss is not None and not math.isfinite(r.loss))
    span = smoothing_span(len(points))
    smooth = list(zip((x for x, _ in points), ema([y for _, y in points], span), strict=True))
    svg = line_chart_svg(
        [
            Series("raw", points, RAW_COLOUR, "loss-raw", opacity=0.35, width=1.2),
            Series(f"smoothed (EMA, span {span})", smooth, EMA_COLOUR, "loss-ema", width=2.2),
        ],
        title="loss",
        y_label="loss",
        markers=epoch_markers(rows),
        robust=True,
        chart_id="loss-chart",
    )
    notes = [f"{len(points)} point(s)"]
    if len(points) > MAX_DRAWN_POINTS:
        notes.append(f"drawn as at most {MAX_DRAWN_POINTS} (lowest and highest of each stretch kept)")
    if skipped:
        notes.append(f"{skipped} value(s) not finite (NaN/inf) left out")
    return svg, "; ".join(notes)


def lr_chart(rows: Sequence[MetricRow]) -> tuple[Markup, str] | None:
    points = finite_points((r.step, r.lr) for r in rows)
    if not points:
        return None
    svg = line_chart_svg(
        [Series("learning rate (scheduled)", points, LR_COLOUR, "lr-line", width=2)],
        title="learning rate",
        y_label="lr",
        markers=epoch_markers(rows),
        chart_id="lr-chart",
        height=220,
    )
    return svg, f"{len(points)} point(s)"


def median_seconds_per_step(rows: Sequence[MetricRow]) -> float | None:
    """The median of the rows' seconds per step (sd-scripts' own rate), the finite ones; None without any."""
    per_step = [
        r.seconds_per_step for r in rows if r.seconds_per_step is not None and math.isfinite(r.seconds_per_step)
    ]
    return statistics.median(per_step) if per_step else None
