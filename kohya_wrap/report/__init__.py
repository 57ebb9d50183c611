"""`kohya-wrap report`: one self-contained HTML page per run (runs/<id>/report.html).

data.py        reads the run: the typed record, command.json, configs, metrics, log, grids
charts.py      metrics → inline SVG charts (pure)
images.py      image files → data: URIs
page.py        the view of each section, rendered into the page
templating.py  the Jinja2 environment (autoescape on for every template)
templates/     the page's HTML, SVG and CSS
"""

from kohya_wrap.report.charts import (
    EMA_COLOUR,
    LR_COLOUR,
    MAX_DRAWN_POINTS,
    RAW_COLOUR,
    MetricRow,
    Series,
    decimate,
    ema,
    epoch_markers,
    finite_points,
    line_chart_svg,
    loss_chart,
    lr_chart,
    nice_ticks,
    parse_metrics,
    smoothing_span,
    step_label,
    tick_label,
)
from kohya_wrap.report.data import log_tail, read_run, sample_prompts
from kohya_wrap.report.images import GRID_SIDE, SAMPLE_SIDE, THUMB_SIDE, image_data_uri
from kohya_wrap.report.page import _charts, build_report, concepts_of, pick_run, size_text, write_report

__all__ = [
    "EMA_COLOUR",
    "GRID_SIDE",
    "LR_COLOUR",
    "MAX_DRAWN_POINTS",
    "RAW_COLOUR",
    "SAMPLE_SIDE",
    "THUMB_SIDE",
    "MetricRow",
    "Series",
    "build_report",
    "concepts_of",
    "decimate",
    "ema",
    "epoch_markers",
    "finite_points",
    "image_data_uri",
    "line_chart_svg",
    "log_tail",
    "loss_chart",
    "lr_chart",
    "nice_ticks",
    "parse_metrics",
    "pick_run",
    "read_run",
    "sample_prompts",
    "size_text",
    "smoothing_span",
    "step_label",
    "tick_label",
    "write_report",
    "_charts",  # the charts section alone (tests/test_report.py)
]
