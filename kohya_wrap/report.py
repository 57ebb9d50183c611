"""`report`: one self-contained HTML page per run, written to runs/<id>/report.html.

The page opens from disk with no server and no network: CSS inline, charts as inline SVG, every image
a data: URI (downscaled with Pillow), no JavaScript. It is built only from what the run recorded
(manifest.json, command.json, metrics.csv, events.jsonl, train.log, the configs copied into the run
folder) plus the files those name that still exist (training images, sample images, checkpoints) and
any grids under runs/<id>/grids/*/grid.json. Everything that comes from the user or a log is
HTML-escaped. The chart builders are pure (data in, SVG text out); `build_report` reads files.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
import shlex
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import sha256_file, write_text_atomic

REPORT_NAME = "report.html"
MAX_DRAWN_POINTS = 1000  # per line of a chart; more are decimated (min/max per bucket, spikes kept)
THUMB_SIDE = 256  # training-image thumbnails, long side in px
SAMPLE_SIDE = 512  # sample images (256 when a run saved very many)
GRID_SIDE = 1024  # grid pages: a grid of several images is unreadable at 512 px
THUMBS_PER_CONCEPT = 12
RAW_EMBED_BYTES = 200_000  # a small PNG/JPEG/GIF/WebP within the size limit is embedded as it is
LOG_TAIL_LINES = 60
LOG_TAIL_BYTES = 400_000  # only the end of train.log is read
SAMPLE_FILE = re.compile(r"^(?P<head>.*?)_(?P<tag>e\d{6}|\d{6})_(?P<index>\d{2})_(?P<stamp>\d{14})(?:_(?P<seed>\d+))?\.[A-Za-z]+$")
ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")

RAW_COLOUR = "#5b8def"  # the raw loss, drawn faint
EMA_COLOUR = "#d6336c"  # the smoothed loss: a colour nothing else on the page uses (the browser test looks for it)
LR_COLOUR = "#2f9e44"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# ---------------------------------------------------------------------------------------------- charts


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
        chunk = inner[int(b * size):int((b + 1) * size)]
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


def line_chart_svg(series: Sequence[Series], *, title: str, y_label: str, x_label: str = "step",
                   markers: Sequence[tuple[float, str]] = (), robust: bool = False, chart_id: str = "",
                   width: int = 1080, height: int = 320) -> str:
    """An inline SVG line chart: axes with round ticks, one polyline per series (decimated to at most
    MAX_DRAWN_POINTS; a lone point also gets a dot), dashed vertical `markers` (x, label) such as
    epoch starts. Points must already be finite."""
    drawn = [(s, decimate(s.points)) for s in series if s.points]
    left, right, top, bottom = 70, 16, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{esc(chart_id)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{esc(title)}">',
             f'<rect class="chart-bg" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
             f'<text x="{left}" y="18" class="chart-title">{esc(title)}</text>']
    if not drawn:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="chart-empty">no data</text></svg>')
        return "".join(parts)
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

    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fbfbfd" stroke="#d0d4dc"/>')
    for tick in nice_ticks(y_low, y_high):
        if y_low <= tick <= y_high:
            y = py(tick)
            parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e8ee"/>'
                         f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{esc(tick_label(tick))}</text>')
    x_ticks = [t for t in nice_ticks(x_low, x_high, 8) if x_low <= t <= x_high]
    if all(float(x).is_integer() for x in xs):
        x_ticks = [t for t in x_ticks if float(t).is_integer()]
    for tick in x_ticks:
        x = px(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 5}" stroke="#8a90a0"/>'
                     f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle" class="tick">{esc(step_label(tick))}</text>')
    if len(markers) <= 60:
        for x_value, label in markers:
            if x_low <= x_value <= x_high:
                x = px(x_value)
                parts.append(f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#b8bdc9" stroke-dasharray="3 3"/>'
                             f'<text x="{x + 3:.1f}" y="{top + 11}" class="marker-label">{esc(label)}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" class="axis-label">{esc(x_label)}</text>'
                 f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" class="axis-label">{esc(y_label)}</text>')
    legend_x = left + plot_w
    for s, points in reversed(drawn):
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline class="{esc(s.css_class)}" data-points="{len(points)}" points="{coords}" fill="none" '
                     f'stroke="{s.colour}" stroke-opacity="{s.opacity}" stroke-width="{s.width}" stroke-linejoin="round"/>')
        if len(points) == 1:
            x, y = points[0]
            parts.append(f'<circle class="{esc(s.css_class)}-dot" cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{s.colour}"/>')
    for s, _ in reversed(drawn):
        label_w = 7 * len(s.name) + 30
        legend_x -= label_w
        parts.append(f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="14" y2="14" stroke="{s.colour}" stroke-opacity="{max(s.opacity, 0.5)}" stroke-width="3"/>'
                     f'<text x="{legend_x + 22}" y="18" class="legend">{esc(s.name)}</text>')
    if clipped:
        parts.append(f'<text x="{left + plot_w - 4}" y="{top + plot_h - 6}" text-anchor="end" class="note">a few spikes above the top are cut off</text>')
    parts.append("</svg>")
    return "".join(parts)


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
        rows.append(MetricRow(step, int(epoch) if epoch is not None and math.isfinite(epoch) else None,
                              _number(record.get("loss")), _number(record.get("lr")), _number(record.get("seconds_per_step"))))
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


def loss_chart(rows: Sequence[MetricRow]) -> tuple[str, str]:
    """(SVG, note) for the loss: raw (faint) and its EMA."""
    points = finite_points((r.step, r.loss) for r in rows)
    skipped = sum(1 for r in rows if r.loss is not None and not math.isfinite(r.loss))
    span = smoothing_span(len(points))
    smooth = list(zip((x for x, _ in points), ema([y for _, y in points], span)))
    svg = line_chart_svg([Series("raw", points, RAW_COLOUR, "loss-raw", opacity=0.35, width=1.2),
                          Series(f"smoothed (EMA, span {span})", smooth, EMA_COLOUR, "loss-ema", width=2.2)],
                         title="loss", y_label="loss", markers=epoch_markers(rows), robust=True, chart_id="loss-chart")
    notes = [f"{len(points)} point(s)"]
    if len(points) > MAX_DRAWN_POINTS:
        notes.append(f"drawn as at most {MAX_DRAWN_POINTS} (lowest and highest of each stretch kept)")
    if skipped:
        notes.append(f"{skipped} value(s) not finite (NaN/inf) left out")
    return svg, "; ".join(notes)


def lr_chart(rows: Sequence[MetricRow]) -> tuple[str, str] | None:
    points = finite_points((r.step, r.lr) for r in rows)
    if not points:
        return None
    svg = line_chart_svg([Series("learning rate (scheduled)", points, LR_COLOUR, "lr-line", width=2)],
                         title="learning rate", y_label="lr", markers=epoch_markers(rows), chart_id="lr-chart", height=220)
    return svg, f"{len(points)} point(s)"


# ---------------------------------------------------------------------------------------------- images


def image_data_uri(path: Path, max_side: int) -> tuple[str, int, int] | None:
    """A data: URI of the image (downscaled to `max_side` on the long side: JPEG, or PNG where there is
    transparency; a small PNG/JPEG/GIF/WebP is embedded unchanged), with its size; None if unreadable."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            width, height = image.size
            kind = image.format
            raw = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}.get(kind or "")
            orientation = image.getexif().get(0x0112, 1) if kind in ("JPEG", "WEBP", "PNG") else 1
            if raw and max(width, height) <= max_side and path.stat().st_size <= RAW_EMBED_BYTES and orientation in (1, None):
                return f"data:{raw};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}", width, height
            if kind == "JPEG":
                image.draft("RGB", (max_side, max_side))  # decode big JPEGs at a fraction of their size
            image.load()
            picture = ImageOps.exif_transpose(image) or image
            alpha = picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info)
            picture = picture.convert("RGBA" if alpha else "RGB")
            picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            if alpha:
                picture.save(buffer, "PNG", optimize=True)
                mime = "image/png"
            else:
                picture.save(buffer, "JPEG", quality=85, optimize=True)
                mime = "image/jpeg"
            return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}", picture.width, picture.height
    except Exception:  # any file a user left in a folder: unreadable, truncated, a decompression bomb — one image must not stop the report
        return None


def _img(path: Path, max_side: int, alt: str, css_class: str) -> str:
    found = image_data_uri(path, max_side) if path.is_file() else None
    if found is None:
        reason = "missing" if not path.exists() else "unreadable"
        return f'<div class="{css_class} placeholder" title="{esc(path)}">{reason}</div>'
    uri, width, height = found
    return f'<img class="{css_class}" src="{uri}" width="{width}" height="{height}" alt="{esc(alt)}" title="{esc(alt)}">'


def _link(target: Path, run_dir: Path, inner: str) -> str:
    """A relative link from the report to a file of the project (works from disk while the project
    is where it was; the page itself needs none of them)."""
    import os

    if not target.is_file():
        return inner
    try:
        relative = os.path.relpath(target, run_dir)
    except ValueError:  # another drive on Windows
        return inner
    return f'<a href="{esc(quote(Path(relative).as_posix()))}">{inner}</a>'


# ---------------------------------------------------------------------------------------------- reading the record


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_toml(path: Path) -> dict[str, Any] | None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, ValueError):
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def size_text(size: int | float | None) -> str:
    if size is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min {rest % 60:02d} s" if hours else f"{rest // 60} min {rest % 60:02d} s" if rest >= 60 else f"{rest} s"


def _when(stamp: str | None) -> str:
    if not stamp:
        return "?"
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return stamp


def _config_file(run_dir: Path, name: str, argv: list[str], flag: str) -> tuple[Path | None, bool]:
    """The copy of a rendered config in the run folder; else the file the command pointed at (which
    may have been rendered again since: the second value says it is not the run's own copy)."""
    if (run_dir / name).is_file():
        return run_dir / name, True
    if flag in argv[:-1]:
        pointed = Path(argv[argv.index(flag) + 1])
        if pointed.is_file():
            return pointed, False
    return None, False


def sample_prompts(text: str | None) -> list[str]:
    """The prompt lines as sd-scripts reads a .txt prompt file (blank and # lines skipped)."""
    if not text:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _table(rows: Iterable[tuple[str, Any]], css_class: str = "kv") -> str:
    body = "".join(f"<tr><th>{esc(key)}</th><td>{esc(_value_text(value))}</td></tr>" for key, value in rows)
    return f'<table class="{css_class}">{body}</table>' if body else ""


# ---------------------------------------------------------------------------------------------- sections


def _or_dash(value: Any) -> Any:
    return "—" if value is None else value


def _header(manifest: dict, command: dict | None, spec: dict | None, root: Path, rows: Sequence[MetricRow]) -> str:
    verdict = str(manifest.get("verdict", "?"))
    exit_code = manifest.get("exit_code")
    badge = "ok" if exit_code == 0 else "interrupted" if exit_code == 130 else "failed"
    name = (spec or {}).get("name") or root.name
    steps = manifest.get("steps") or {}
    facts: list[tuple[str, Any]] = [
        ("project", f"{name} — {root}"),
        ("run", manifest.get("run_id")),
        ("verdict", verdict),
        ("exit codes", f"kohya-wrap {_or_dash(exit_code)}, sd-scripts {_or_dash(manifest.get('child_exit_code'))}"),
        ("started", _when(manifest.get("started"))),
        ("ended", _when(manifest.get("ended"))),
        ("duration", _duration(manifest.get("duration_s"))),
        ("steps", f"{steps.get('reached', '?')} of {steps.get('planned', '?')} planned"),
        ("final loss", _or_dash(manifest.get("final_loss"))),
        ("final learning rate", _or_dash(manifest.get("final_lr"))),
        ("seed", _or_dash(manifest.get("seed"))),
    ]
    per_step = [r.seconds_per_step for r in rows if r.seconds_per_step is not None and math.isfinite(r.seconds_per_step)]
    if per_step:
        facts.append(("median s/step", f"{statistics.median(per_step):.3g}"))
    resume = manifest.get("resume")
    if resume:
        facts.append(("resumed from", f"{Path(str(resume.get('state', ''))).name} (step {resume.get('from_step')})"))
    if command:
        argv = [str(a) for a in command.get("argv") or []]
        facts.append(("command", shlex.join(argv)))
        facts.append(("working folder", command.get("cwd")))
        if command.get("env"):
            facts.append(("environment overrides", " ".join(f"{k}={v}" for k, v in command["env"].items())))
    diagnosis = "".join(f"<li>{esc(line)}</li>" for line in manifest.get("diagnosis") or [])
    return (f'<header id="summary"><h1>{esc(name)} <span class="run-id">run {esc(manifest.get("run_id"))}</span></h1>'
            f'<p><span class="badge {badge}">{esc(verdict)}</span></p>'
            + (f'<ul class="diagnosis">{diagnosis}</ul>' if diagnosis else "")
            + _table(facts) + "</header>")


def _environment(manifest: dict) -> str:
    sd = manifest.get("sd_scripts") or {}
    environment = manifest.get("environment") or {}
    packages = environment.get("packages") or {}
    rows: list[tuple[str, Any]] = [
        ("kohya-wrap", manifest.get("kohya_wrap")),
        ("sd-scripts", sd.get("schema")),
        ("sd-scripts commit", sd.get("commit") or environment.get("sd_scripts_commit") or "not recorded"),
        ("sd-scripts folder", sd.get("root")),
        ("sd-scripts python", sd.get("python")),
    ]
    if environment.get("sd_scripts_changed_files"):
        rows.append(("local changes in sd-scripts", ", ".join(environment["sd_scripts_changed_files"])))
    if "error" in packages:
        rows.append(("packages", f"not read: {packages['error']}"))
    else:
        for key, value in packages.items():
            if key in ("torch_cuda", "torch_hip"):
                rows.append((key.replace("_", " ").replace("torch ", "torch build: "), value or "none"))
            else:
                rows.append((key, value))
    rows.append(("GPUs", ", ".join(environment.get("gpus") or []) or "none found (nvidia-smi)"))
    rows.append(("Python", manifest.get("python")))
    rows.append(("platform", manifest.get("platform")))
    return f'<section id="environment"><h2>Environment</h2>{_table(rows)}</section>'


def _charts(rows: Sequence[MetricRow], metrics_found: bool) -> str:
    if not metrics_found:
        return '<section id="charts"><h2>Loss</h2><p class="note">no metrics.csv in the run folder</p></section>'
    if not any(r.loss is not None and math.isfinite(r.loss) for r in rows):
        return ('<section id="charts"><h2>Loss</h2><p class="note">no loss was reported'
                + (" (every value was NaN or infinite)" if any(r.loss is not None for r in rows) else " (the run ended before its first step)")
                + "</p></section>")
    svg, note = loss_chart(rows)
    parts = [f'<section id="charts"><h2>Loss</h2><div class="chart-box">{svg}</div><p class="note">{esc(note)}</p>']
    lr = lr_chart(rows)
    parts.append("<h2>Learning rate</h2>")
    if lr is None:
        parts.append('<p class="note">not recorded (the rate is only known for the standard schedulers; adaptive optimizers set their own)</p>')
    else:
        parts.append(f'<div class="chart-box">{lr[0]}</div><p class="note">{esc(lr[1])}</p>')
    parts.append("</section>")
    return "".join(parts)


def _sample_groups(paths: Sequence[str], rows: Sequence[MetricRow]) -> list[tuple[str, list[tuple[Path, re.Match | None]]]]:
    """Sample images grouped by the epoch or step in their name (sd-scripts: <name>_e000002_01_<time>_<seed>.png
    or <name>_000200_01_…), in training order; names it does not know come last."""
    last_step_of_epoch: dict[int, float] = {}
    for row in rows:
        if row.epoch is not None:
            last_step_of_epoch[row.epoch] = max(row.step, last_step_of_epoch.get(row.epoch, row.step))
    groups: dict[tuple, list[tuple[Path, re.Match | None]]] = {}
    labels: dict[tuple, str] = {}
    for text in paths:
        path = Path(text)
        match = SAMPLE_FILE.match(path.name)
        if match is None:
            key: tuple = (2, math.inf, 0)
            labels[key] = "other"
        elif match["tag"].startswith("e"):
            epoch = int(match["tag"][1:])
            step = 0 if epoch == 0 else last_step_of_epoch.get(epoch)
            key = (0, step if step is not None else epoch, epoch)
            labels[key] = "before training" if epoch == 0 else f"epoch {epoch}" + (f" (step {step_label(step)})" if step is not None else "")
        else:
            step = int(match["tag"])
            key = (0, step, -1)
            labels[key] = "before training" if step == 0 else f"step {step}"
        groups.setdefault(key, []).append((path, match))
    ordered = []
    for key in sorted(groups):
        items = sorted(groups[key], key=lambda item: (int(item[1]["index"]) if item[1] else 0, item[0].name))
        ordered.append((labels[key], items))
    return ordered


def _samples(manifest: dict, prompts: list[str], rows: Sequence[MetricRow], run_dir: Path) -> str:
    paths = [str(p) for p in manifest.get("sample_images") or []]
    head = '<section id="samples"><h2>Sample images</h2>'
    if not paths:
        return head + '<p class="note">none were saved during this run (set [sample] prompts and every_n_epochs or every_n_steps in the spec)</p></section>'
    side = SAMPLE_SIDE if len(paths) <= 48 else SAMPLE_SIDE // 2
    parts = [head]
    for label, items in _sample_groups(paths, rows):
        parts.append(f'<div class="sample-group"><h3>{esc(label)}</h3><div class="strip">')
        for path, match in items:
            index = int(match["index"]) if match else None
            prompt = prompts[index] if index is not None and index < len(prompts) else ""
            text, _, options = prompt.partition(" --")
            caption = f'<span class="prompt">{esc(text)}</span>' + (f'<span class="options">--{esc(options)}</span>' if options else "")
            if match and match["seed"]:
                caption += f'<span class="options">seed {esc(match["seed"])}</span>'
            image = _img(path, side, text or path.name, "sample")
            parts.append(f'<figure class="sample-fig">{_link(path, run_dir, image)}<figcaption>{caption or esc(path.name)}</figcaption></figure>')
        parts.append("</div></div>")
    parts.append("</section>")
    return "".join(parts)


def _grids(run_dir: Path) -> str:
    files = sorted((run_dir / "grids").glob("*/grid.json")) if (run_dir / "grids").is_dir() else []
    if not files:
        return ""
    parts = ['<section id="grids"><h2>Grids</h2>']
    for grid_file in files:
        grid = _read_json(grid_file)
        if not isinstance(grid, dict):
            parts.append(f'<p class="note">{esc(grid_file.parent.name)}: grid.json is not readable</p>')
            continue
        parts.append(f'<div class="grid"><h3>{esc(grid.get("title") or grid_file.parent.name)}</h3>')
        pages = grid.get("pages") if isinstance(grid.get("pages"), list) else []
        for page in pages:
            if not isinstance(page, dict) or not isinstance(page.get("image"), str):
                continue
            label = str(page.get("label") or page["image"])
            image_path = grid_file.parent / page["image"]
            image = _img(image_path, GRID_SIDE, label, "grid-page")
            parts.append(f'<figure class="grid-fig">{_link(image_path, run_dir, image)}<figcaption>{esc(label)}</figcaption></figure>')
        if not pages:
            parts.append('<p class="note">no pages</p>')
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


@dataclass
class Concept:
    folder: str  # relative to the project root where it is inside it
    repeats: int | None
    class_tokens: str
    is_reg: bool
    caption_extension: str
    images: list[dict]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def concepts_of(manifest: dict, dataset_config: dict | None, root: Path) -> list[Concept]:
    """The run's concepts: the subsets of its dataset.toml, with the images the manifest lists in each
    folder; images in folders no subset names get a concept of their own (repeats from `N_` names)."""
    general = (dataset_config or {}).get("general") or {}
    default_extension = general.get("caption_extension") or ".caption"
    by_folder: dict[str, list[dict]] = {}
    for item in manifest.get("dataset") or []:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            by_folder.setdefault(Path(item["path"]).parent.as_posix(), []).append(item)
    concepts: list[Concept] = []
    for dataset in (dataset_config or {}).get("datasets") or []:
        for subset in dataset.get("subsets") or []:
            if not isinstance(subset, dict) or "image_dir" not in subset:
                continue
            image_dir = Path(str(subset["image_dir"]))
            folder = _relative(image_dir, root)
            if folder not in by_folder and f"{image_dir.parent.name}/{image_dir.name}" in by_folder:
                folder = f"{image_dir.parent.name}/{image_dir.name}"  # the project was moved since the run
            concepts.append(Concept(folder, subset.get("num_repeats"), str(subset.get("class_tokens") or ""), bool(subset.get("is_reg")),
                                    subset.get("caption_extension") or dataset.get("caption_extension") or default_extension,
                                    by_folder.pop(folder, [])))
    for folder, images in by_folder.items():
        name = Path(folder).name
        repeats, _, words = name.partition("_")
        concepts.append(Concept(folder, int(repeats) if repeats.isdigit() else None, words if repeats.isdigit() else "",
                                folder.startswith("reg/"), default_extension, images))
    return concepts


def _evenly(items: Sequence[Any], count: int) -> list[Any]:
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def _dataset(manifest: dict, dataset_config: dict | None, root: Path, run_dir: Path) -> str:
    concepts = concepts_of(manifest, dataset_config, root)
    parts = ['<section id="dataset"><h2>Dataset</h2>']
    if not concepts:
        return parts[0] + '<p class="note">no dataset recorded</p></section>'
    rows = []
    for c in concepts:
        rows.append(f"<tr><td>{esc(c.folder)}</td><td>{esc(c.class_tokens)}</td><td>{'regularization' if c.is_reg else 'training'}</td>"
                    f"<td class='num'>{len(c.images)}</td><td class='num'>{esc(c.repeats if c.repeats is not None else '?')}</td>"
                    f"<td class='num'>{len(c.images) * c.repeats if c.repeats else '?'}</td>"
                    f"<td class='num'>{size_text(sum(int(i.get('bytes') or 0) for i in c.images))}</td></tr>")
    parts.append('<table class="concepts"><tr><th>folder</th><th>class tokens</th><th>kind</th><th>images</th><th>repeats</th>'
                 f'<th>images × repeats</th><th>size</th></tr>{"".join(rows)}</table>')
    for c in concepts:
        shown = _evenly(c.images, THUMBS_PER_CONCEPT)
        parts.append(f'<div class="concept"><h3>{esc(c.folder)} <span class="note">{len(shown)} of {len(c.images)} image(s)</span></h3><div class="strip">')
        for item in shown:
            path = root / item["path"]
            caption = _read_text(path.with_suffix(c.caption_extension)) if c.caption_extension else None
            caption = " ".join(caption.split()) if caption else ""
            note = ""
            if path.is_file() and item.get("bytes") is not None and path.stat().st_size != item["bytes"]:
                note = '<span class="warn">changed since the run</span>'
            image = _img(path, THUMB_SIDE, caption or path.name, "thumb")
            short = caption if len(caption) <= 90 else caption[:87] + "…"
            parts.append(f'<figure class="thumb-fig">{_link(path, run_dir, image)}<figcaption><span class="file">{esc(path.name)}</span>'
                         f'{note}<span class="caption">{esc(short)}</span></figcaption></figure>')
        parts.append("</div></div>")
    parts.append("</section>")
    return "".join(parts)


def _checkpoints(manifest: dict, spec: dict | None, root: Path) -> str:
    outputs = [o for o in manifest.get("outputs") or [] if isinstance(o, dict) and o.get("path")]
    head = '<section id="checkpoints"><h2>Checkpoints</h2>'
    if not outputs:
        return head + '<p class="note">this run saved no model file</p></section>'
    name = (spec or {}).get("name")
    rows = []
    for output in outputs:
        path = Path(output["path"])
        exists = path.is_file()
        size_now = path.stat().st_size if exists else None
        sha = output.get("sha256") or (sha256_file(path) if exists else None)
        recorded = "recorded" if output.get("sha256") else "computed now" if sha else ""
        state = "missing" if not exists else "exists" if size_now == output.get("bytes") else "exists, size changed since the run"
        final = name is not None and path.stem == name
        rows.append(f"<tr><td>{esc(path.name)}{' <b>(final)</b>' if final else ''}<div class='path'>{esc(_relative(path, root))}</div></td>"
                    f"<td class='num'>{size_text(output.get('bytes'))}</td><td class='{'ok' if state == 'exists' else 'warn'}'>{esc(state)}</td>"
                    f"<td><code>{esc(sha or '—')}</code> <span class='note'>{recorded}</span></td></tr>")
    return head + ('<table class="checkpoints"><tr><th>file</th><th>size</th><th>now</th><th>SHA-256</th></tr>'
                   + "".join(rows) + "</table></section>")


def _settings(train_config: dict | None, dataset_config: dict | None, files: list[tuple[str, Path | None, bool]]) -> str:
    parts = ['<section id="settings"><h2>Settings</h2>']
    if train_config:
        for section, values in train_config.items():
            if isinstance(values, dict):
                parts.append(f"<h3>train.toml [{esc(section)}]</h3>" + _table(values.items()))
            else:
                parts.append(_table([(section, values)]))
    if dataset_config:
        general = dataset_config.get("general") or {}
        if general:
            parts.append("<h3>dataset.toml [general]</h3>" + _table(general.items()))
        for d, dataset in enumerate(dataset_config.get("datasets") or []):
            for s, subset in enumerate(dataset.get("subsets") or []):
                parts.append(f"<h3>dataset {d + 1}, subset {s + 1}</h3>" + _table((subset or {}).items()))
    if not train_config and not dataset_config:
        parts.append('<p class="note">the rendered configs were not found</p>')
    for label, path, own in files:
        if path is None:
            continue
        text = _read_text(path)
        if text is None:
            continue
        where = "" if own else f" — not the run's copy: the current {esc(path)}, possibly rendered again since"
        parts.append(f'<details><summary>{esc(label)}{where}</summary><pre>{esc(text)}</pre></details>')
    parts.append("</section>")
    return "".join(parts)


def log_tail(raw: bytes, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of train.log as a terminal would show them: control codes gone, a progress bar
    redrawn with \\r counted once (its last state)."""
    text = ANSI.sub("", raw[-LOG_TAIL_BYTES:].decode("utf-8", errors="replace"))
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return [line for line in shown if line.strip()][-lines:]


def _log(run_dir: Path, manifest: dict) -> str:
    parts = ['<section id="log"><h2>Log</h2>']
    warnings, errors, exception = 0, [], None
    try:
        with open(run_dir / "events.jsonl", encoding="utf-8") as handle:
            for line in handle:
                if '"LogMessage"' not in line and '"TracebackLine"' not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "LogMessage":
                    if event.get("level") == "WARNING":
                        warnings += 1
                    elif event.get("level") in ("ERROR", "CRITICAL"):
                        errors.append(str(event.get("message")))
                elif event.get("event") == "TracebackLine" and event.get("exception") and exception is None:
                    exception = event["exception"]
    except OSError:
        pass
    parts.append(f'<p>{warnings} warning(s), {len(errors)} error(s) in the log'
                 + (f'; exception: <code>{esc(exception)}</code>' if exception else "") + "</p>")
    if errors:
        parts.append('<ul class="errors">' + "".join(f"<li>{esc(e)}</li>" for e in errors[:20]) + "</ul>")
    try:
        with open(run_dir / "train.log", "rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - LOG_TAIL_BYTES))
            tail = log_tail(handle.read())
    except OSError:
        tail = []
    if tail:
        failed = manifest.get("exit_code") not in (0, 130)
        parts.append(f'<details{" open" if failed else ""}><summary>train.log, last {len(tail)} line(s)</summary>'
                     f'<pre class="log">{esc(chr(10).join(tail))}</pre></details>')
    parts.append("</section>")
    return "".join(parts)


STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans CJK SC", "Microsoft YaHei", sans-serif;
       margin: 0; background: #f4f5f8; color: #1d2330; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 60px; }
header, section { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 14px 18px; margin: 0 0 16px; }
h1 { font-size: 22px; margin: 0 0 6px; } h2 { font-size: 17px; margin: 4px 0 10px; } h3 { font-size: 14px; margin: 12px 0 6px; }
.run-id { font-weight: 400; color: #5d6575; font-size: 15px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600; color: #fff; }
.badge.ok { background: #2b8a3e; } .badge.failed { background: #c92a2a; } .badge.interrupted { background: #e67700; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { text-align: left; vertical-align: top; padding: 3px 10px 3px 0; border-bottom: 1px solid #eef0f4; }
table.kv th { font-weight: 600; color: #485163; white-space: nowrap; width: 190px; }
td { word-break: break-word; } td.num { text-align: right; } .path { color: #6b7385; font-size: 12px; }
.note { color: #6b7385; font-size: 12px; } .warn { color: #b35c00; } td.ok { color: #2b8a3e; }
code, pre { font: 12px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
pre { background: #f6f7f9; padding: 8px; overflow: auto; max-height: 480px; white-space: pre-wrap; word-break: break-all; }
.chart-box { overflow-x: auto; } svg.chart { max-width: 100%; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #485163; } svg .chart-title { font-weight: 600; font-size: 12px; }
.strip { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; } figcaption { font-size: 12px; color: #485163; word-break: break-word; }
figcaption span { display: block; } figcaption .options, .file { color: #7a8293; }
.thumb-fig { width: 150px; } img.thumb, .thumb.placeholder { width: 150px; height: 150px; object-fit: cover; border-radius: 4px; background: #e9ecf1; }
.sample-fig { width: 256px; } img.sample, .sample.placeholder { width: 256px; height: auto; min-height: 60px; border-radius: 4px; background: #e9ecf1; }
.grid-fig { margin-bottom: 14px; } img.grid-page { max-width: 100%; height: auto; }
.grid-page.placeholder { width: 240px; height: 80px; background: #e9ecf1; border-radius: 4px; }
.placeholder { display: flex; align-items: center; justify-content: center; color: #8a90a0; font-size: 12px; }
.diagnosis li, .errors li { color: #a61e1e; }
details summary { cursor: pointer; color: #2c5db8; margin: 6px 0; }
"""


def build_report(run_dir: Path) -> str:
    """The whole page for the run recorded in `run_dir` (runs/<id>/ of a project)."""
    root = run_dir.parent.parent
    manifest = _read_json(run_dir / "manifest.json")
    if not isinstance(manifest, dict):
        raise KohyaWrapError(f"{run_dir}: no readable manifest.json (the run is still going, or ended without a record)",
                             "see `kohya-wrap runs` for the runs with a record")
    command = _read_json(run_dir / "command.json")
    command = command if isinstance(command, dict) else None
    spec = _read_json(run_dir / "spec.json")
    spec = spec if isinstance(spec, dict) else None
    argv = [str(a) for a in (command or {}).get("argv") or []]
    train_path, train_own = _config_file(run_dir, "train.toml", argv, "--config_file")
    dataset_path, dataset_own = _config_file(run_dir, "dataset.toml", argv, "--dataset_config")
    train_config = _read_toml(train_path) if train_path else None
    dataset_config = _read_toml(dataset_path) if dataset_path else None
    prompts_path = run_dir / "sample_prompts.txt"
    prompts_text = _read_text(prompts_path) if prompts_path.is_file() else None
    metrics_text = _read_text(run_dir / "metrics.csv")
    rows = parse_metrics(metrics_text) if metrics_text else []
    name = (spec or {}).get("name") or root.name
    body = [
        _header(manifest, command, spec, root, rows),
        _charts(rows, metrics_text is not None),
        _samples(manifest, sample_prompts(prompts_text), rows, run_dir),
        _grids(run_dir),
        _dataset(manifest, dataset_config, root, run_dir),
        _checkpoints(manifest, spec, root),
        _settings(train_config, dataset_config, [("train.toml", train_path, train_own), ("dataset.toml", dataset_path, dataset_own),
                                                 ("sample_prompts.txt", prompts_path if prompts_text is not None else None, True),
                                                 ("spec.json (the resolved spec)", run_dir / "spec.json" if spec else None, True)]),
        _environment(manifest),
        _log(run_dir, manifest),
        f'<section id="manifest"><h2>Manifest</h2><details><summary>manifest.json</summary>'
        f'<pre>{esc(json.dumps(manifest, indent=2, ensure_ascii=False))}</pre></details></section>',
    ]
    from kohya_wrap import __version__

    title = f"{name} · run {manifest.get('run_id', run_dir.name)} · {manifest.get('verdict', '')}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="kohya-wrap {esc(__version__)}">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body><main>"
            + "".join(body)
            + f'<p class="note">written by kohya-wrap {esc(__version__)} report from {esc(run_dir)}</p></main></body></html>\n')


def pick_run(root: Path, run_id: str | None) -> Path:
    """runs/<run_id>, or the newest run with a record."""
    from kohya_wrap.training.record import find_run

    run_dir = find_run(root / "runs", run_id)
    if run_dir is None:
        raise KohyaWrapError(f"{root}: no run with a record yet", "`kohya-wrap run` starts one")
    return run_dir


def write_report(run_dir: Path) -> Path:
    path = run_dir / REPORT_NAME
    write_text_atomic(path, build_report(run_dir))
    return path
