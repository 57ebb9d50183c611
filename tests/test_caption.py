"""`kohya-wrap caption` with tiny BLIP and WD14-style models built here and loaded through the same code
path as the real ones: sidecars with the trigger first, skipping and resuming, tagger thresholds,
exclusions and --append, and the immediate offline error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers")

from caption_models import build_tiny_blip, build_tiny_tagger  # noqa: E402

FOLDER = ("image", "10_mytoken woman")


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("models") / "tiny blip")


@pytest.fixture(scope="session")
def tiny_tagger(tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return build_tiny_tagger(tmp_path_factory.mktemp("models") / "tiny tagger")


COLORS = [(230, 30, 30), (30, 30, 230), (30, 200, 30), (250, 250, 250)]


@pytest.fixture
def project(tmp_path, base_model) -> Path:
    root = tmp_path / "caption 项目"
    folder = root.joinpath(*FOLDER)
    folder.mkdir(parents=True)
    for index in range(20):
        Image.new("RGB", (48 + index, 64), COLORS[index % 4]).save(folder / f"img{index:02d}.png")
    (root / "kohya-wrap.toml").write_text(
        f'name = "c"\n[model]\nbase = "{base_model.as_posix()}"\n[[concepts]]\ntoken = "mytoken"\nclass = '
        '"woman"\nrepeats = 10\n'
        '[dataset]\nresolution = 64\ncaption_extension = ".txt"\n[training]\nmax_train_epochs = 1\n',
        encoding="utf-8",
    )
    return root


def captions(root: Path) -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(root.joinpath(*FOLDER).glob("*.txt"))}


def test_blip_writes_a_caption_per_image_with_the_trigger_first(project, cli, tiny_blip):
    result = cli("caption", project, "--model", "blip", "--model-path", tiny_blip, "--batch-size", "6", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)["concepts"][0]
    assert data["written"] == 20 and data["skipped"] == 0 and not data["failed"]
    written = captions(project)
    assert len(written) == 20
    for text in written.values():
        assert text.startswith("mytoken, ") and text.endswith("\n") and len(text.split(", ", 1)[1].split()) >= 1
    # batched and one-at-a-time give the same captions (beam search is deterministic)
    again = cli(
        "caption", project, "--model", "blip", "--model-path", tiny_blip, "--batch-size", "1", "--overwrite", "--json"
    )
    assert again.code == 0 and json.loads(again.out)["concepts"][0]["written"] == 20
    assert captions(project) == written
    # a second plain run has nothing to do and does not even load the model
    skipped = cli("caption", project, "--model", "blip", "--model-path", project / "no such model")
    assert skipped.code == 0 and "0 caption(s) written" in skipped.out and "20 already captioned" in skipped.out


def test_blip_prefix_suffix_and_sampling(project, cli, tiny_blip):
    result = cli(
        "caption",
        project,
        "--model",
        "blip",
        "--model-path",
        tiny_blip,
        "--prefix",
        "ohwx person",
        "--suffix",
        "white background",
        "--top-p",
        "0.9",
        "--max-length",
        "12",
        "--min-length",
        "2",
    )
    assert result.code == 0, result.err
    for text in captions(project).values():
        assert text.startswith("ohwx person, ") and text.endswith(", white background\n")


def test_wd14_tags_thresholds_exclusions_and_append(project, cli, tiny_tagger):
    folder = project.joinpath(*FOLDER)
    (folder / "img03.txt").write_text(
        "mytoken, white shirt, 1girl", encoding="utf-8"
    )  # a white image, captioned already
    result = cli("caption", project, "--model", "wd14", "--model-path", tiny_tagger, "--exclude", "simple background")
    assert result.code == 0, result.err
    assert "19 caption(s) written" in result.out and "1 already captioned" in result.out
    tags = captions(project)
    assert tags["img00"] == "mytoken, red hair, 1girl, ^_^\n"  # by confidence; kaomoji keep their underscore
    assert tags["img01"] == "mytoken, blue eyes, 1girl, ^_^\n"
    assert tags["img02"] == "mytoken, hatsune miku, green hair, 1girl, ^_^\n"  # character tags first
    assert tags["img03"] == "mytoken, white shirt, 1girl"  # untouched

    lower = cli(
        "caption",
        project,
        "--model",
        "wd14",
        "--model-path",
        tiny_tagger,
        "--overwrite",
        "--no-prefix",
        "--general-threshold",
        "0.4",
        "--keep-underscores",
        "--rating",
        "--concept",
        "mytoken",
    )
    assert lower.code == 0, lower.err
    tags = captions(project)
    assert tags["img00"] == "red_hair, 1girl, ^_^, simple_background, general\n"
    assert tags["img03"] == "1girl, ^_^, simple_background, general\n"

    (folder / "img03.txt").write_text("mytoken, white shirt, 1girl", encoding="utf-8")
    merged = cli(
        "caption", project, "--model", "wd14", "--model-path", tiny_tagger, "--append", "--general-threshold", "0.6"
    )
    assert merged.code == 0, merged.err
    assert captions(project)["img03"] == "mytoken, white shirt, 1girl, ^_^\n"  # old items first, nothing twice


def test_offline_without_the_model_fails_at_once(project):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(project.parent / "empty hf home"))
    env.pop("KOHYA_WRAP_BLIP_MODEL", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "kohya_wrap", "caption", str(project), "--model", "blip"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert "Salesforce/blip-image-captioning-large" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    assert "KOHYA_WRAP_BLIP_MODEL" in result.stderr and "--model-path" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert elapsed < 2.0, elapsed  # the bound, with the interpreter's start-up included

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "kohya_wrap",
            "caption",
            str(project),
            "--model",
            "wd14",
            "--model-path",
            str(project / "nowhere"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_an_interrupted_run_keeps_what_it_wrote(tmp_path):
    """Ctrl-C during the third batch: the first two batches' captions are on disk, whole; a rerun only
    captions the rest (the CLI skips images that have a caption)."""
    from kohya_wrap.caption import CaptionJob, run_captioner

    jobs = []
    for index in range(10):
        image = tmp_path / f"i{index}.png"
        Image.new("RGB", (8, 8), (index * 20, 0, 0)).save(image)
        jobs.append(CaptionJob(image, image.with_suffix(".txt"), "tok"))
    calls = []

    def captioner(images):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [f"image {len(calls)}"] * len(images)

    with pytest.raises(KeyboardInterrupt):
        run_captioner(captioner, jobs, 4)
    written = sorted(p.name for p in tmp_path.glob("*.txt"))
    assert written == [f"i{i}.txt" for i in range(8)]  # batches 1 and 2 (4 images each) written, batch 3 not
    assert (tmp_path / "i0.txt").read_text(encoding="utf-8") == "tok, image 1\n"
    assert (tmp_path / "i7.txt").read_text(encoding="utf-8") == "tok, image 2\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_libraries_are_named(project, cli, tiny_blip, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    result = cli("caption", project, "--model", "blip", "--model-path", tiny_blip)
    assert result.code == 2 and "needs torch and transformers" in result.err and "kohya-wrap[caption]" in result.err


def test_caption_then_edit_the_tags_then_undo(project, cli, tiny_tagger):
    """The issue's path on 20 images: tag them, count, remove/add/trigger, and undo back to the tagger's
    output byte for byte."""
    import hashlib

    assert cli("caption", project, "--model", "wd14", "--model-path", tiny_tagger, "--no-prefix").code == 0
    folder = project.joinpath(*FOLDER)
    tagged = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.txt")}
    assert len(tagged) == 20 and captions(project)["img01"] == "blue eyes, 1girl, ^_^, simple background\n"

    stats = json.loads(cli("tags", "stats", project, "--json", "--top", "0").out)
    counts = {t["tag"]: t["count"] for t in stats["tags"]}
    assert stats["captions"] == 20 and counts == {
        "1girl": 20,
        "^_^": 20,
        "simple background": 20,
        "blue eyes": 5,
        "red hair": 5,
        "green hair": 5,
        "hatsune miku": 5,
    }
    assert cli("tags", "remove", project, "blue eyes").code == 0
    assert cli("tags", "add", project, "white background", "--back").code == 0
    assert cli("tags", "trigger", project, "mytoken").code == 0
    edited = captions(project)
    assert edited["img01"] == "mytoken, 1girl, ^_^, simple background, white background\n"
    assert edited["img00"] == "mytoken, red hair, 1girl, ^_^, simple background, white background\n"
    assert edited["img03"] == "mytoken, 1girl, ^_^, simple background, white background\n"
    for _ in range(3):
        assert cli("tags", "undo", project).code == 0
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.txt")} == tagged
