"""Concept folders seen as sd-scripts sees them, and photos imported without touching the originals."""

from __future__ import annotations

import os

from PIL import Image

from conftest import make_image
from kohya_wrap.dataset.facts import image_size
from kohya_wrap.dataset.importer import import_images
from kohya_wrap.dataset.scan import scan_folder


def test_scan_matches_sd_scripts_listing(tmp_path):
    make_image(tmp_path / "b.png", (64, 32))
    make_image(tmp_path / "a.JPG", (32, 64))
    make_image(tmp_path / "c.Jpg", (10, 10))  # sd-scripts' glob is case-sensitive: skipped
    make_image(tmp_path / ".hidden.png", (10, 10))  # glob("*") skips dotfiles
    Image.new("RGB", (8, 8)).save(tmp_path / "d.gif")
    (tmp_path / "a.txt").write_text("caption", encoding="utf-8")
    (tmp_path / "b.caption").write_text("caption", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    scan = scan_folder(tmp_path)
    assert [(p.path.name, p.size) for p in scan.images] == [("a.JPG", (32, 64)), ("b.png", (64, 32))]
    assert [p.name for p in scan.skipped] == ["c.Jpg", "d.gif"]
    assert {p.name: c.name for p, c in scan.captions_with(".txt").items()} == {"a.JPG": "a.txt"}
    assert {p.name for p in scan.captions_with(".caption")} == {"b.png"}
    assert not scan_folder(tmp_path / "missing").exists


def test_image_size_is_the_stored_size_like_sd_scripts(tmp_path):
    """sd-scripts pins imagesize 1.4.1 (requirements.txt), which never reads the EXIF orientation: its
    buckets are chosen for the stored shape (imagesize ≥ 2, installed here, would rotate JPEG sizes)."""
    for fmt in ("JPEG", "WEBP", "PNG"):
        path = tmp_path / f"rotated.{fmt.lower()}"
        image = Image.new("RGB", (80, 40))
        exif = image.getexif()
        exif[0x0112] = 6  # viewers rotate it 90°; sd-scripts does not
        image.save(path, fmt, exif=exif)
        assert image_size(path) == (80, 40), fmt
    (tmp_path / "junk.png").write_bytes(os.urandom(100))
    assert image_size(tmp_path / "junk.png") is None


def test_import_copies_readable_images_and_captions_only(tmp_path):
    source = tmp_path / "src 照片"
    make_image(source / "one.PNG", (16, 16))
    make_image(source / "two.jpg", (16, 16))
    (source / "one.txt").write_text("tag", encoding="utf-8")
    (source / "orphan.txt").write_text("no image", encoding="utf-8")
    Image.new("RGB", (8, 8)).save(source / "three.tiff")
    os.chmod(source / "two.jpg", 0o444)
    target = tmp_path / "image" / "10_t"
    result = import_images(source, target)
    assert (result.copied, result.captions, [p.name for p in result.unsupported]) == (2, 1, ["three.tiff"])
    assert sorted(p.name for p in target.iterdir()) == ["one.png", "one.txt", "two.jpg"]
    assert (target / "two.jpg").stat().st_mtime == (source / "two.jpg").stat().st_mtime
    (target / "two.jpg").chmod(0o644)
    (target / "two.jpg").write_bytes(b"changed by the user")
    again = import_images(source, target)
    assert (again.copied, again.unchanged, [p.name for p in again.conflicts]) == (0, 2, ["two.jpg"])
    assert (target / "two.jpg").read_bytes() == b"changed by the user"  # never overwritten
    assert not [p for p in target.iterdir() if p.name.startswith(".")]  # no temp files left


def test_check_reports_caption_encoding_and_bom(project, cli):
    root = project()
    folder = root / "image" / "10_mytoken woman"
    (folder / "img000.txt").write_bytes("caption".encode("utf-16"))
    (folder / "img001.txt").write_bytes("\ufeffmytoken, smile".encode("utf-8"))
    (folder / "img002.txt").write_text("  ", encoding="utf-8")
    result = cli("check", root)
    assert result.code == 2
    assert "1 caption file(s) are not UTF-8" in result.out
    assert "byte-order mark" in result.out and "are empty" in result.out


def test_truncated_images_are_found_before_launch(project, cli):
    root = project()
    folder = root / "image" / "10_mytoken woman"
    for name, fmt in (("cut.png", "PNG"), ("cut.jpg", "JPEG"), ("cut.webp", "WEBP")):
        path = folder / name
        Image.effect_noise((64, 64), 50).convert("RGB").save(path, fmt)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    whole = folder / "whole.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(whole, "JPEG")
    whole.write_bytes(whole.read_bytes() + b"\0" * 2000)  # padding after the end marker is harmless
    result = cli("check", root)
    assert result.code == 2
    line = next(text for text in result.out.splitlines() if "truncated or corrupt" in text)
    assert (
        "3 image(s)" in line
        and "cut.jpg" in line
        and "cut.png" in line
        and "cut.webp" in line
        and "whole.jpg" not in line
    )
