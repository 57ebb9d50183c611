"""One obvious dataset path: `init --images DIR` remembers DIR as the concept's source and prepares it
(rejected files never enter the training folder; `--no-prep` copies verbatim), `prep --source` is saved
in the spec, a source prepared again replaces its earlier copy, and paths on the command line are
relative to the current folder."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

CONCEPT = ("image", "10_mytoken woman")


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A photo-like picture: random shapes, so no two are near-duplicates of each other."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(20, max(21, min(size) // 3))
        draw.ellipse((x, y, x + r, y + r), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return image


def phone_photos(folder: Path) -> dict[str, str]:
    """Photos as a phone leaves them, in a folder whose name has a space and Chinese characters; returns
    each file's SHA-256 (to prove they are never changed)."""
    folder.mkdir(parents=True)
    for index in range(12):
        photo((1200, 900) if index % 2 else (900, 1200), index).save(folder / f"IMG_{index:04d}.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown upright
    photo((1200, 900), 50).save(folder / "sideways.jpg", exif=exif.tobytes(), quality=90)
    cutout = Image.new("RGBA", (800, 800), (0, 0, 0, 0))
    ImageDraw.Draw(cutout).ellipse((100, 100, 700, 700), fill=(200, 40, 40, 255))
    cutout.save(folder / "cutout.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    photo((100, 80), 60).save(folder / "thumb.png")
    (folder / "IMG_0000 copy.jpg").write_bytes((folder / "IMG_0000.jpg").read_bytes())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def training_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.joinpath(*CONCEPT).iterdir() if p.suffix != ".txt")


def test_init_images_prepares_the_photos_and_remembers_the_source(tmp_path, cli, base_model):
    photos = tmp_path / "my photos 照片"
    before = phone_photos(photos)
    root = tmp_path / "my lora 项目"
    made = cli(
        "init",
        root,
        "--preset",
        "sd15-character",
        "--token",
        "mytoken",
        "--class",
        "woman",
        "--images",
        photos,
        "--base-model",
        base_model,
    )
    assert made.code == 0, made.err
    assert "rejected broken.jpg" in made.out and "rejected thumb.png: too small" in made.out
    assert "rejected IMG_0000.jpg: exact duplicate of IMG_0000 copy.jpg" in made.out  # the first by path stays
    files = training_files(root)
    expected = sorted([f"IMG_{i:04d}.png" for i in range(1, 12)] + ["IMG_0000 copy.png", "sideways.png", "cutout.png"])
    assert files == expected  # no rejected file in the training folder
    sideways = Image.open(root.joinpath(*CONCEPT, "sideways.png"))
    assert sideways.height > sideways.width  # upright
    cutout = Image.open(root.joinpath(*CONCEPT, "cutout.png"))
    assert cutout.mode == "RGB" and cutout.getpixel((2, 2)) == (255, 255, 255)  # on white, not black
    spec = tomllib.loads((root / "kohya-wrap.toml").read_text(encoding="utf-8"))
    assert spec["concepts"][0]["source"] == str(photos)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.iterdir()} == before
    checked = cli("check", root)
    assert checked.code == 0, checked.out
    again = cli("prep", root)  # the remembered source: nothing to do
    assert again.code == 0 and "0 written" in again.out and "17 unchanged" in again.out


def test_no_prep_copies_verbatim_and_a_later_prep_replaces_the_copies(tmp_path, cli, base_model):
    photos = tmp_path / "photos"
    phone_photos(photos)
    root = tmp_path / "p"
    made = cli(
        "init",
        root,
        "--token",
        "mytoken",
        "--class",
        "woman",
        "--images",
        photos,
        "--base-model",
        base_model,
        "--no-prep",
    )
    assert made.code == 0, made.err
    assert "IMG_0001.jpg" in training_files(root) and "broken.jpg" in training_files(root)  # as they were
    prepared = cli("prep", root, "--json")
    assert prepared.code == 0, prepared.err
    removed = {Path(p).name for p in json.loads(prepared.out)["concepts"][0]["removed"]}
    assert {"IMG_0001.jpg", "broken.jpg", "thumb.png", "IMG_0000.jpg", "IMG_0000 copy.jpg"} <= removed
    files = training_files(root)
    expected = sorted([f"IMG_{i:04d}.png" for i in range(1, 12)] + ["IMG_0000 copy.png", "sideways.png", "cutout.png"])
    assert files == expected and not any(name.endswith(".jpg") for name in files)  # one training image per photo
    assert cli("check", root).code == 0


def test_another_format_replaces_the_earlier_output(tmp_path, cli, base_model):
    photos = tmp_path / "photos"
    phone_photos(photos)
    root = tmp_path / "p"
    made = cli("init", root, "--token", "mytoken", "--class", "woman", "--images", photos, "--base-model", base_model)
    assert made.code == 0, made.err
    again = cli("prep", root, "--format", "jpg")
    assert again.code == 0, again.err
    expected = sorted([f"IMG_{i:04d}.jpg" for i in range(1, 12)] + ["IMG_0000 copy.jpg", "sideways.jpg", "cutout.jpg"])
    assert training_files(root) == expected


def test_paths_on_the_command_line_are_relative_to_the_current_folder(tmp_path, cli, monkeypatch):
    work = tmp_path / "work"
    phone_photos(work / "pics")
    (work / "m.safetensors").write_bytes(b"\0" * 16)
    monkeypatch.chdir(work)
    made = cli("init", "proj", "--token", "mytoken", "--base-model", "m.safetensors")
    assert made.code == 0, made.err
    spec = tomllib.loads((work / "proj" / "kohya-wrap.toml").read_text(encoding="utf-8"))
    assert spec["model"]["base"] == str(work / "m.safetensors")
    prepared = cli("prep", "proj", "--source", "pics")
    assert prepared.code == 0, prepared.err
    assert "saved in the spec" in prepared.out
    spec = tomllib.loads((work / "proj" / "kohya-wrap.toml").read_text(encoding="utf-8"))
    assert spec["concepts"][0]["source"] == str(work / "pics")
    assert (work / "proj" / "kohya-wrap.toml.bak").is_file()  # the edit can be undone
    checked = cli("check", "proj")
    assert checked.code == 0, checked.out
    assert cli("prep", "proj").code == 0  # from the spec now
