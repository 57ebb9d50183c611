"""What sd-scripts gets wrong about an image without a word (EXIF orientation, transparency, images far
below the training size) found by `check`/`lint`; the per-project cache that makes a second `check` open
no image; and clean reasons for files Pillow cannot read, in `check` and in `prep`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_image
from kohya_wrap.dataset import facts
from kohya_wrap.dataset.facts import cache_file, image_size, read_facts
from test_prep import prepared  # noqa: F401 - the prepared project fixture

FOLDER = ("image", "10_mytoken woman")


def with_orientation(path: Path, value: int, fmt: str, size=(600, 400)) -> Path:
    image = Image.new("RGB", size, (200, 120, 40))
    exif = Image.Exif()
    exif[0x0112] = value
    image.save(path, fmt, exif=exif.tobytes())
    return path


def cutout(path: Path, under: tuple[int, int, int], size=(600, 600)) -> Path:
    """A subject on a transparent background whose pixels hold `under`."""
    image = Image.new("RGBA", size, (*under, 0))
    image.paste(Image.new("RGBA", (size[0] // 2, size[1] // 2), (30, 140, 90, 255)), (size[0] // 4, size[1] // 4))
    image.save(path)
    return path


def awkward(folder: Path) -> None:
    """What a phone and an image editor hand over, copied in as they are (as `init --images` does)."""
    with_orientation(folder / "phone.jpg", 6, "JPEG")
    with_orientation(folder / "upside.webp", 3, "WEBP")
    with_orientation(folder / "screenshot.png", 8, "PNG")
    with_orientation(folder / "upright.jpg", 1, "JPEG")
    cutout(folder / "cutout.png", (0, 0, 0))
    cutout(folder / "removed.png", (90, 160, 220))  # the background an editor removed is still there
    opaque = Image.new("RGBA", (600, 600), (10, 20, 30, 255))  # an alpha channel, nothing transparent
    opaque.save(folder / "opaque.png")
    palette = Image.new("P", (600, 600), 0)
    palette.putpalette([0, 0, 0, 250, 40, 40] + [0] * 762)
    palette.paste(1, (100, 100, 500, 500))
    palette.save(folder / "palette.png", transparency=0)  # GIF-style: index 0 transparent
    make_image(folder / "thumb.png", (100, 80))


def findings(result_out: str) -> list[dict]:
    return [f for f in json.loads(result_out)["findings"] if f["where"] == "/".join(FOLDER)]


def one(found: list[dict], text: str) -> dict:
    hits = [f for f in found if text in f["what"]]
    assert len(hits) == 1, (text, [f["what"] for f in found])
    return hits[0]


def test_check_flags_what_sd_scripts_gets_wrong_silently(project, cli):
    root = project()
    awkward(root.joinpath(*FOLDER))
    result = cli("check", root, "--json")
    assert result.code == 0, result.out  # warnings: the files train, wrongly
    found = findings(result.out)

    turned = one(found, "EXIF orientation that sd-scripts does not apply")
    assert turned["severity"] == "warning"
    assert turned["what"].startswith("3 image(s)")
    assert "phone.jpg (sideways)" in turned["what"] and "upside.webp (upside down)" in turned["what"]
    assert "screenshot.png (sideways)" in turned["what"] and "upright.jpg" not in turned["what"]
    assert "`kohya-wrap prep`" in turned["fix"] and "applies the orientation" in turned["fix"]

    alpha = one(found, "have transparent areas")
    assert alpha["severity"] == "warning" and alpha["what"].startswith("3 image(s)")
    assert "cutout.png (black)" in alpha["what"] and "palette.png (black)" in alpha["what"]
    assert "removed.png (the colours under them)" in alpha["what"]
    assert "opaque.png" not in alpha["what"]  # a fully opaque alpha channel changes nothing
    assert "`kohya-wrap prep`" in alpha["fix"] and "white" in alpha["fix"]

    small = one(found, "far below the 512×512 training size")
    assert small["severity"] == "warning" and small["what"].startswith("1 image(s)")
    assert "(shorter side under 256 px): thumb.png (100×80, trains as 64×64)" in small["what"]  # bucket_no_upscale
    assert "`kohya-wrap prep` rejects images whose shorter side is under 256 px" in small["fix"]

    text = cli("lint", root)
    assert text.code == 0
    assert "carry an EXIF orientation" in text.out and "have transparent areas" in text.out
    assert "far below the 512×512 training size" in text.out


def test_tiny_images_that_sd_scripts_upscales(project, cli):
    root = project("[dataset]\nbucket_no_upscale = false\n")
    folder = root.joinpath(*FOLDER)
    make_image(folder / "thumb.png", (100, 80))
    make_image(folder / "medium.png", (300, 300))  # smaller than 512, but not far: the upscaling finding
    found = findings(cli("check", root, "--json").out)
    assert "thumb.png (100×80, upscaled ×5.8)" in one(found, "far below the 512×512")["what"]
    upscaled = one(found, "get upscaled")["what"]
    assert "medium.png" in upscaled and "thumb.png" not in upscaled  # one finding per image


def test_white_under_transparency_is_only_a_note_and_alpha_mask_is_respected(project, cli):
    root = project()
    cutout(root.joinpath(*FOLDER) / "white.png", (255, 255, 255))
    assert one(findings(cli("check", root, "--json").out), "transparent areas")["severity"] == "info"
    masked = project("alpha_mask = true\n", folder_name="masked")  # a concept's own sd-scripts subset key
    cutout(masked.joinpath(*FOLDER) / "cutout.png", (0, 0, 0))
    note = one(findings(cli("check", masked, "--json").out), "transparent areas")
    assert note["severity"] == "info" and "alpha_mask leaves out of the loss" in note["what"]
    everywhere = project(folder_name="everywhere")  # sd-scripts' own --alpha_mask, for every subset
    cutout(everywhere.joinpath(*FOLDER) / "cutout.png", (0, 0, 0))
    noted = one(findings(cli("check", everywhere, "--json", "--set", "training.alpha_mask=true").out), "transparent")
    assert noted["severity"] == "info" and "alpha_mask leaves out of the loss" in noted["what"]


def test_a_second_check_opens_no_image(project, cli, monkeypatch):
    root = project()
    folder = root.joinpath(*FOLDER)
    awkward(folder)
    first = cli("check", root, "--json")
    cache = json.loads(cache_file(root).read_text(encoding="utf-8"))
    assert cache["version"] == facts.CACHE_VERSION and len(cache["images"]) == 19

    def no_reading(*args, **kwargs):
        raise AssertionError(f"read an image again: {args}")

    monkeypatch.setattr(facts, "read_facts", no_reading)
    monkeypatch.setattr(facts, "image_size", no_reading)
    monkeypatch.setattr("kohya_wrap.dataset.dhash.image_dhash", no_reading)
    monkeypatch.setattr(Image, "open", no_reading)
    second = cli("check", root, "--json")
    assert second.code == first.code and findings(second.out) == findings(first.out)

    # a changed file is read again, and only it; a deleted one leaves the cache
    monkeypatch.undo()
    read = []
    monkeypatch.setattr(facts, "read_facts", lambda path: read.append(path.name) or read_facts(path))
    cutout(folder / "opaque.png", (0, 0, 0))
    os.utime(folder / "opaque.png", ns=(1, 1))
    (folder / "thumb.png").unlink()
    third = cli("check", root, "--json")
    assert read == ["opaque.png"]
    assert "opaque.png (black)" in one(findings(third.out), "transparent areas")["what"]
    assert len(json.loads(cache_file(root).read_text(encoding="utf-8"))["images"]) == 18


@pytest.mark.parametrize(
    "damage",
    ["not json", '{"version": 1, "images": []}', '{"version": 1, "images": {"x": 1}}', "[]", '{"version": 0}'],
)
def test_a_damaged_cache_is_rebuilt(project, cli, damage):
    root = project()
    awkward(root.joinpath(*FOLDER))
    expected = findings(cli("check", root, "--json").out)
    path = cache_file(root)
    good = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(damage, encoding="utf-8")
    assert findings(cli("check", root, "--json").out) == expected
    assert json.loads(path.read_text(encoding="utf-8")) == good
    # an entry of the right length but wrong types is read again, not trusted
    broken = dict(good)
    broken["images"] = {key: [value[0], value[1], "w", None, 5, 1, "?"] for key, value in good["images"].items()}
    path.write_text(json.dumps(broken), encoding="utf-8")
    assert findings(cli("check", root, "--json").out) == expected


def test_a_read_only_cache_still_checks(project, cli):
    root = project()
    (root / ".kohya-wrap").mkdir()
    (root / ".kohya-wrap" / "cache").write_text("a file where the cache folder goes", encoding="utf-8")
    assert cli("check", root).code == 0


def test_check_names_unreadable_images_cleanly(project, cli):
    root = project()
    folder = root.joinpath(*FOLDER)
    whole = folder / "img000.png"
    (folder / "header-only.png").write_bytes(whole.read_bytes()[:40])  # a size, then nothing Pillow can open
    result = cli("check", root)
    assert result.code == 2
    line = next(text for text in result.out.splitlines() if "truncated or corrupt" in text)
    assert "not an image Pillow can read" in line and "header-only.png" in line
    assert "cannot identify" not in result.out and "object at 0x" not in result.out
    assert str(folder) not in line  # no absolute path inside the reason


def test_prep_names_unreadable_sources_cleanly(prepared, cli, tmp_path):  # noqa: F811
    root, _ = prepared
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "notes.jpg").write_bytes(b"not an image at all")
    Image.new("RGB", (400, 400), (1, 2, 3)).save(extra / "cut.jpg", quality=95)
    (extra / "cut.jpg").write_bytes((extra / "cut.jpg").read_bytes()[:600])
    with_orientation(extra / "fine.png", 6, "PNG", (400, 300))
    png = (extra / "fine.png").read_bytes()
    (extra / "broken.png").write_bytes(png[:200] + bytes(b ^ 0x55 for b in png[200:260]) + png[260:])
    result = cli("prep", root, "--json", "--source", extra)
    assert result.code == 0, result.err
    reasons = {Path(r["source"]).name: r["reason"] for r in json.loads(result.out)["concepts"][0]["rejected"]}
    assert reasons["notes.jpg"].startswith("not an image Pillow can read")
    assert reasons["cut.jpg"] == "truncated: the file ends before its image data does"
    assert reasons["broken.png"].startswith("corrupt: ") and "b'" not in reasons["broken.png"]
    assert not any("object at 0x" in reason or str(extra) in reason for reason in reasons.values())


def test_read_facts_one_file(tmp_path):
    assert read_facts(with_orientation(tmp_path / "a.jpg", 6, "JPEG", (80, 40))).orientation == 6
    assert image_size(tmp_path / "a.jpg") == (80, 40)  # stored, as sd-scripts' imagesize 1.4.1 reads it
    assert read_facts(with_orientation(tmp_path / "b.jpg", 99, "JPEG")).orientation == 1  # not a valid value
    (tmp_path / "c.png").write_bytes(os.urandom(64))
    assert read_facts(tmp_path / "c.png") == facts.ImageFacts(None)  # check's "not readable images"
    assert read_facts(cutout(tmp_path / "d.png", (0, 0, 0))).alpha == "black"
    edge = Image.new("RGBA", (64, 64), (250, 250, 250, 255))
    edge.putpixel((0, 0), (255, 255, 255, 200))  # only translucent: still what sd-scripts shows there
    edge.save(tmp_path / "e.png")
    assert read_facts(tmp_path / "e.png").alpha == "white"
