"""`kohya-wrap report`: a real run on the stand-in trainer → runs/<id>/report.html, parsed and checked
(charts, embedded images, escaping, offline); the chart builder on its own; and, with the `browser`
marker, the page rendered by headless Chromium and its screenshot looked at."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import REPLAYS as FIXTURES
from conftest import load_page
from kohya_wrap import report

XSS_CAPTION = "<script>alert(1)</script>"
XSS_PROMPT = "<script>alert(2)</script>"
CONCEPT_COLOUR = (250, 190, 20)


class Page(HTMLParser):
    """Every start tag with its attributes, and the text, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        if data.strip():
            self.texts.append(data.strip())

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def images(self, css_class: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == "img" and css_class in a.get("class", "").split()]


def decode(src: str):
    from PIL import Image

    head, data = src.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64"), head
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def noise(path: Path, size: tuple[int, int], fmt: str = "PNG") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path, fmt)
    return path


def polyline_points(attrs: dict[str, str]) -> int:
    return len(attrs["points"].split())


@pytest.fixture
def recorded_run(on_standin, tmp_path, cli, monkeypatch):
    """A project with a Chinese folder and class word, a caption and a sample prompt holding markup,
    trained on the stand-in (a recording with 2 epochs); then the sample images sd-scripts would have
    saved (the replay writes none) and two grid folders, as `grid` writes them, added to the record."""
    from PIL import Image

    monkeypatch.setenv("KOHYA_WRAP_REPLAY", str(FIXTURES / "pipe_epochs_samples.jsonl"))
    monkeypatch.setenv("KOHYA_WRAP_REPLAY_SPEED", "200")
    root = tmp_path / "my lora 项目"
    (root / "model").mkdir(parents=True)
    (root / "m.safetensors").write_bytes(b"x")
    (root / "kohya-wrap.toml").write_text(
        f'name = "rec_lora"\n[model]\nbase = "{(root / "m.safetensors").as_posix()}"\n'
        '[[concepts]]\ntoken = "mytoken"\nclass = "女人"\nrepeats = 2\n'
        "[dataset]\nresolution = 64\n[training]\nmax_train_steps = 4\nseed = 42\n"
        f'[sample]\nprompts = ["{XSS_PROMPT} portrait of mytoken", "mytoken 女人 smiling"]\nevery_n_epochs = 1\n',
        encoding="utf-8",
    )
    folder = root / "image" / "2_mytoken 女人"
    folder.mkdir(parents=True)
    for index in range(2):
        Image.new("RGB", (64, 64), CONCEPT_COLOUR).save(folder / f"照片{index}.png")
        (folder / f"照片{index}.txt").write_text(f"mytoken 女人, {XSS_CAPTION}, photo {index}", encoding="utf-8")
    noise(folder / "big.jpg", (1500, 1000), "JPEG")
    (folder / "big.txt").write_text("mytoken 女人, a big photo", encoding="utf-8")
    result = cli("run", root, "--plain")
    assert result.code == 0, result.out + result.err
    run_dir = next(p for p in (root / "runs").iterdir() if p.is_dir())

    samples = []
    for epoch, stamp in ((1, "20261125103222"), (2, "20261125103227")):
        for index in range(2):
            size = (900, 600) if (epoch, index) == (2, 1) else (96, 96)
            samples.append(noise(root / "model" / "sample" / f"rec_lora_e{epoch:06d}_{index:02d}_{stamp}_1.png", size))
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["sample_images"] = [str(p) for p in reversed(samples)]  # the page orders them itself
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")

    grid = run_dir / "grids" / "lr-sweep"
    grid.mkdir(parents=True)
    gradient = Image.linear_gradient("L").resize((300, 200)).convert("RGB")
    gradient.save(grid / "grid-seed1.png")
    (grid / "grid.json").write_text(
        json.dumps(
            {
                "title": "LR sweep <b>学习率</b>",
                "pages": [
                    {"label": "seed 1", "image": "grid-seed1.png"},
                    {"label": "seed 2", "image": "grid-seed2.png"},
                ],
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    (run_dir / "grids" / "broken").mkdir()
    (run_dir / "grids" / "broken" / "grid.json").write_text("{not json", encoding="utf-8")
    return root, run_dir


def test_report_of_a_recorded_run(recorded_run, cli):
    root, run_dir = recorded_run
    result = cli("report", root)
    path = run_dir / "report.html"
    assert result.code == 0, result.err
    assert result.out.strip().startswith(f"report: {path} (") and path.is_file()
    text = path.read_text(encoding="utf-8")
    page = Page(text)

    # the loss chart: one drawn point per metrics row, raw and smoothed
    rows = list(csv.DictReader((run_dir / "metrics.csv").open(encoding="utf-8")))
    assert rows and page.find("svg", id="loss-chart")
    for css_class in ("loss-raw", "loss-ema"):
        (line,) = page.find("polyline", class_=css_class)
        assert int(line["data-points"]) == polyline_points(line) == len(rows)
    (lr_line,) = page.find("polyline", class_="lr-line")
    assert polyline_points(lr_line) == len(rows)

    # images: all embedded, all real, none from the network
    thumbs = page.images("thumb")
    assert len(thumbs) == 3
    decoded = [decode(a["src"]) for a in thumbs]
    assert max(max(i.size) for i in decoded) <= report.THUMB_SIDE  # the 1500×1000 photo was downscaled
    assert any(i.convert("RGB").getpixel((5, 5)) == CONCEPT_COLOUR for i in decoded)
    samples = page.images("sample")
    assert len(samples) == 4 and all(max(decode(a["src"]).size) <= report.SAMPLE_SIDE for a in samples)
    (grid_page,) = page.images("grid-page")
    assert decode(grid_page["src"]).size == (300, 200)
    for tag, attrs in page.tags:
        for key in ("src", "href"):
            assert not attrs.get(key, "").lower().startswith(("http:", "https:", "//")), (tag, attrs)
        assert tag not in ("script", "link", "iframe", "object", "embed")
    assert (
        not re.search(r"""(src|href)\s*=\s*["']?https?:""", text, re.I) and "url(" not in text and "@import" not in text
    )
    assert [a["src"][:11] for a in page.find("img") if not a["src"].startswith("data:image/")] == []

    # user text is escaped wherever it lands; non-ASCII names survive
    assert XSS_CAPTION not in text and XSS_PROMPT not in text and "<b>学习率</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert any(XSS_CAPTION in t for t in page.texts) and any(XSS_PROMPT in t for t in page.texts)
    assert "女人" in text and "my lora 项目" in text and "照片0.png" in page.texts

    # samples grouped by epoch in order, each with its prompt; grids with labels; broken grid skipped
    labels = [t for t in page.texts if t.startswith("epoch ")]
    assert labels == ["epoch 1 (step 2)", "epoch 2 (step 4)"]
    assert page.texts.index("seed 1") < page.texts.index("seed 2")
    assert (
        "LR sweep <b>学习率</b>" in page.texts
        and "missing" in page.texts
        and "broken: grid.json is not readable" in page.texts
    )

    # checkpoints with sizes and SHA-256 computed from the files; the manifest, pretty and escaped
    final = root / "model" / "rec_lora.safetensors"
    assert hashlib.sha256(final.read_bytes()).hexdigest() in text and "(final)" in page.texts
    assert page.find("section", id="manifest") and page.find("details")
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert (
        json.dumps(manifest, indent=2, ensure_ascii=False)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        in text
    )
    assert "networks.lora" in page.texts  # the settings table from the run's train.toml
    assert len(text) < 2_000_000

    shown = cli("runs", "show", run_dir.name, root)
    assert shown.code == 0 and f"  report: {path}" in shown.out.splitlines()
    again = cli("report", root, "--run", run_dir.name, "--json")
    assert again.code == 0 and json.loads(again.out) == {
        "run_id": run_dir.name,
        "report": str(path),
        "bytes": path.stat().st_size,
    }
    missing = cli("report", root, "--run", "nosuch")
    assert (
        missing.code == 2
        and missing.out == ""
        and len(missing.err.strip().splitlines()) == 1
        and "nosuch: no such run record" in missing.err
    )
    assert cli("report", root, "--run", "../runs").code == 2


def test_a_sparse_record_still_makes_a_page(tmp_path, cli):
    """A resumed run's record with NaN/inf losses, no learning rates, no configs, no command, no
    samples: the page is made from what there is; the latest run with a record is the default."""
    root = tmp_path / "项目"
    root.mkdir()
    (root / "kohya-wrap.toml").write_text('name = "x"\n', encoding="utf-8")
    old, new, running = (
        root / "runs" / "20260101-000000",
        root / "runs" / "20260102-000000",
        root / "runs" / "20260103-000000",
    )
    for folder in (old, new, running):
        folder.mkdir(parents=True)
    # the fields every run record has (training/record.py); the rest is left out
    required = {
        "kohya_wrap": "0.1.0",
        "started": "2026-01-01T00:00:00+00:00",
        "ended": "2026-01-01T00:01:00+00:00",
        "duration_s": 60.0,
        "python": "3.11",
        "platform": "test",
        "steps": {"planned": 2000, "reached": 1004},
        "sd_scripts": {"root": "/sd-scripts", "python": "/sd-scripts/venv/bin/python", "schema": "test"},
    }
    old_record = {**required, "run_id": old.name, "verdict": "trained", "exit_code": 0}
    (old / "manifest.json").write_text(json.dumps(old_record), encoding="utf-8")
    new_record = {
        **required,
        "run_id": new.name,
        "verdict": "failed: <oops>",
        "exit_code": 1,
        "diagnosis": ["the loss became NaN: <x>"],
        "resume": {
            "state": "/p/model/x-step00001000-state",
            "from_step": 1000,
            "skip_until_initial_step": False,
            "sd_scripts_step_offset": 1000,
        },
        "outputs": [{"path": str(root / "model" / "gone.safetensors"), "bytes": 5}],
    }
    (new / "manifest.json").write_text(json.dumps(new_record), encoding="utf-8")
    (new / "metrics.csv").write_text(
        "step,epoch,loss,lr,seconds_per_step,elapsed_s\n1001,3,0.5,,1,1\n1002,3,nan,,1,2\n1003,4,inf,,1,3\n1004,4,0.4,,1,4\n",
        encoding="utf-8",
    )
    (new / "train.log").write_bytes(b"\x1b[31mstep 1\rstep 2\rstep 3\x1b[0m\nTraceback <here>\n")
    result = cli("report", root)
    assert result.code == 0, result.err
    text = (new / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    (raw,) = page.find("polyline", class_="loss-raw")
    assert polyline_points(raw) == 2 and "2 value(s) not finite (NaN/inf) left out" in text
    assert "1001" in page.texts and "1004" in page.texts  # step ticks start where the resumed run did
    assert "not recorded (the rate is only known" in text and not page.find("polyline", class_="lr-line")
    assert (
        "failed: <oops>" in page.texts
        and "the loss became NaN: <x>" in page.texts
        and "step 3" in text
        and "step 1\r" not in text
    )
    assert "missing" in page.texts and not (running / "report.html").exists() and not (old / "report.html").exists()
    assert any(t.endswith("step 3\nTraceback <here>") for t in page.texts)  # the pre block of train.log
    assert cli("report", root, "--run", running.name).code == 2
    assert cli("report", root, "--run", old.name).code == 0 and "no metrics.csv" in (old / "report.html").read_text(
        encoding="utf-8"
    )


def test_chart_one_point():
    svg = report.line_chart_svg([report.Series("loss", [(7.0, 0.25)], "#000", "one")], title="t", y_label="loss")
    page = Page(svg)
    (line,) = page.find("polyline", class_="one")
    assert polyline_points(line) == 1 and page.find("circle", class_="one-dot")
    assert "7" in page.texts and not any("nan" in t.lower() for t in page.texts)


def test_chart_skips_nan_and_inf():
    rows = report.parse_metrics(
        "step,epoch,loss,lr\n1,1,0.5,\n2,1,nan,\n3,1,inf,\n4,1,-inf,1e-4\n5,1,0.25,1e-4\nx,1,0.1,\n"
    )
    assert [r.step for r in rows] == [1, 2, 3, 4, 5]
    svg, note = report.loss_chart(rows)
    page = Page(svg)
    for css_class in ("loss-raw", "loss-ema"):
        (line,) = page.find("polyline", class_=css_class)
        assert polyline_points(line) == 2
    assert "nan" not in svg.lower() and "inf" not in svg.lower() and "3 value(s) not finite" in note
    lr_svg, _ = report.lr_chart(rows)
    assert polyline_points(Page(lr_svg).find("polyline", class_="lr-line")[0]) == 2
    assert report.lr_chart(report.parse_metrics("step,epoch,loss,lr\n1,1,0.5,\n")) is None
    assert "every value was NaN" in report._charts(report.parse_metrics("step,epoch,loss,lr\n1,1,nan,\n"), True)
    assert "ended before its first step" in report._charts([], True)


def test_chart_decimates_many_points_and_keeps_spikes():
    points = [(float(step), 1.0 + 0.1 * math.sin(step / 30)) for step in range(1, 5001)]
    points[2345] = (2346.0, 9.0)  # one spike
    points[3000] = (3001.0, -2.0)
    kept = report.decimate(points)
    assert len(kept) <= report.MAX_DRAWN_POINTS and kept[0] == points[0] and kept[-1] == points[-1]
    assert (2346.0, 9.0) in kept and (3001.0, -2.0) in kept and kept == sorted(kept)
    rows = [report.MetricRow(x, 1 + int(x) // 1000, y, 1e-4, 0.5) for x, y in points]
    svg, note = report.loss_chart(rows)
    page = Page(svg)
    for css_class in ("loss-raw", "loss-ema"):
        (line,) = page.find("polyline", class_=css_class)
        assert int(line["data-points"]) == polyline_points(line) <= report.MAX_DRAWN_POINTS
    assert "5000 point(s)" in note and "at most 1000" in note
    assert [t for t in page.texts if t.startswith("e")][:4] == ["e2", "e3", "e4", "e5"]  # epoch starts marked
    assert len(svg) < 100_000


def test_chart_of_a_resumed_run_starts_at_its_first_step():
    points = [(float(step), 1.0 / step) for step in range(1201, 1301)]
    svg = report.line_chart_svg([report.Series("loss", points, "#000", "r")], title="t", y_label="loss")
    page = Page(svg)
    first_x = float(page.find("polyline", class_="r")[0]["points"].split()[0].split(",")[0])
    assert first_x == 70.0  # the left edge of the plot, not step 0
    ticks = [int(t) for t in page.texts if t.isdigit()]
    assert ticks and min(ticks) >= 1201 and max(ticks) <= 1300


def test_ticks_and_labels():
    assert report.nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert report.nice_ticks(1201, 1300, 8)[0] >= 1201
    assert report.nice_ticks(5, 5) == [5]
    assert report.tick_label(2e-6) == "2e-6" and report.tick_label(0.125) == "0.125" and report.tick_label(0) == "0"
    assert report.ema([1.0, 1.0, 1.0], 5) == [1.0, 1.0, 1.0]


def test_images_are_downscaled_and_unreadable_ones_are_skipped(tmp_path):
    from PIL import Image

    big = noise(tmp_path / "big.png", (1400, 700))
    uri, width, height = report.image_data_uri(big, 512)
    assert (
        uri.startswith("data:image/jpeg;base64,") and (width, height) == (512, 256) and decode(uri).size == (512, 256)
    )
    clear = tmp_path / "alpha.png"
    Image.new("RGBA", (800, 800), (0, 0, 0, 0)).save(clear)
    uri, width, height = report.image_data_uri(clear, 512)
    assert uri.startswith("data:image/png;base64,") and decode(uri).mode == "RGBA"
    (tmp_path / "fake.png").write_bytes(b"not an image")
    assert report.image_data_uri(tmp_path / "fake.png", 512) is None


def test_log_tail_shows_the_last_state_of_each_line():
    raw = "first\n\x1b[32mbar 1%\rbar 50%\rbar 100%\x1b[0m\n\n<last>\n".encode()
    assert report.log_tail(raw) == ["first", "bar 100%", "<last>"]
    assert report.log_tail(raw, 1) == ["<last>"]


@pytest.mark.browser
def test_the_page_renders_in_a_browser(chromium, recorded_run, cli, tmp_path):
    """Headless Chromium renders the page offline (every host unresolvable) without console errors;
    the screenshot shows the loss chart's smoothed line and the embedded images."""
    from PIL import Image

    root, run_dir = recorded_run
    assert cli("report", root).code == 0
    page = load_page(chromium, (run_dir / "report.html").as_uri(), tmp_path, "1200,4000")
    assert page.console == [], page.console
    shot = page.screenshot
    assert 'id="loss-chart"' in page.dom and 'class="loss-ema"' in page.dom and "女人" in page.dom

    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 4000)
    colours = image.getcolors(maxcolors=1 << 24)
    assert len(colours) > 5000  # the noise sample images; text and flat boxes give a few hundred at most
    pixels = image.load()
    ema = tuple(int(report.EMA_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    near = [
        (x, y)
        for y in range(0, image.height, 2)
        for x in range(image.width)
        if all(abs(pixels[x, y][i] - ema[i]) <= 24 for i in range(3))
    ]
    assert len(near) > 100, "the smoothed loss line is not on the screenshot"
    xs = [x for x, _ in near]
    assert max(xs) - min(xs) > 500  # drawn across the plot
    concept = sum(count for count, colour in colours if all(abs(colour[i] - CONCEPT_COLOUR[i]) <= 6 for i in range(3)))
    assert concept > 2 * 100 * 100  # the two flat thumbnails, 150 × 150 each


def test_grid_then_report(recorded_run, cli):
    """The real pair: `grid` renders the run's checkpoints (stand-in gen_img.py), `report` shows its pages."""
    root, run_dir = recorded_run
    made = cli("grid", root, "--weights", "0,1", "--seeds", "1,2", "--json")
    assert made.code == 0, made.out + made.err
    folder = Path(json.loads(made.out)["folder"])
    assert folder.parent == run_dir / "grids"
    assert cli("report", root).code == 0
    page = Page((run_dir / "report.html").read_text(encoding="utf-8"))
    pages = page.images("grid-page")
    from PIL import Image

    grid = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
    assert len(grid["pages"]) == 4  # two prompts (from [sample]) × two seeds: a page each, weights × checkpoints on it
    sizes = {Image.open(folder / p["image"]).size for p in grid["pages"]}
    decoded = [decode(a["src"]).size for a in pages if a.get("src", "").startswith("data:")]
    assert sum(size in sizes or max(size) == 1024 for size in decoded) >= 4, (decoded, sizes)
    assert all(any(p["label"] in text for text in page.texts) for p in grid["pages"])
