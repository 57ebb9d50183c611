"""`kohya-wrap prep` on a folder of awkward photos, through the CLI: every mode's sizes, every rejection
with its reason, orientation/alpha/colour handled, sources byte-identical, a second run doing nothing."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageOps

RES = 256


def picture(size: tuple[int, int], seed: int, mode: str = "RGB") -> Image.Image:
    """Big random ellipses on a random background: distinct difference hashes per seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(size[0] // 6, size[0] // 2)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image.convert(mode) if mode != "RGB" else image


def build_sources(folder: Path) -> None:
    folder.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90° clockwise
    picture((480, 320), 1).save(folder / "rotated.jpg", quality=95, exif=exif.tobytes())
    (folder / "rotated.txt").write_text("mytoken woman, sideways photo", encoding="utf-8")
    cutout = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    cutout.paste(picture((200, 300), 2), (100, 50))
    cutout.save(folder / "transparent.png")
    picture((400, 400), 3, "CMYK").save(folder / "cmyk.jpg", quality=95)
    data = (folder / "cmyk.jpg").read_bytes()
    picture((400, 400), 4).save(folder / "whole.jpg", quality=95)
    (folder / "truncated.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:3000])
    (folder / "whole.jpg").unlink()
    picture((500, 400), 5).save(folder / "original.png")
    (folder / "sub").mkdir()
    (folder / "sub" / "copy.png").write_bytes((folder / "original.png").read_bytes())  # exact duplicate
    picture((500, 400), 5).resize((400, 320), Image.Resampling.LANCZOS).save(
        folder / "smaller.jpg", quality=85
    )  # near-duplicate
    picture((60, 60), 6).save(folder / "tiny.png")
    picture((600, 400), 7).save(folder / "photo.webp", quality=90)
    frames = [picture((300, 300), 8, "P"), picture((300, 300), 9, "P")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    wide = picture((1200, 200), 10)
    wide.save(folder / "panorama.png")
    deep = Image.new("I;16", (300, 300))
    deep.putdata([(x * 200 + y * 17) % 65536 for y in range(300) for x in range(300)])
    deep.save(folder / "sixteen.png")
    assert data


def wide_gamut_profile() -> bytes:
    """A minimal ICC v2 RGB display profile with Display P3's primaries (D50-adapted) and gamma 2.2:
    what phone photos embed. Built by hand because Pillow can only create sRGB, Lab and XYZ profiles."""
    import struct

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    name = b"Wide gamut test\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"  # gamma 2.2 (u8Fixed8), padded to 4
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)),
        (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)),
        (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\0\0\0\0none\0\0\0\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"\0" * 4
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def prepared(tmp_path, base_model):
    root = tmp_path / "prep 项目"
    sources = tmp_path / "照片 sources"
    build_sources(sources)
    root.mkdir()
    (root / "kohya-wrap.toml").write_text(
        f'name = "p"\n[model]\nbase = "{base_model.as_posix()}"\n[[concepts]]\ntoken = "mytoken"\nclass = '
        '"woman"\nrepeats = 2\n'
        f'source = "{sources.as_posix()}"\n[dataset]\nresolution = {RES}\nenable_bucket = true\nmin_bucket_reso = '
        "128\nmax_bucket_reso = 512\n[training]\nmax_train_epochs = 1\n",
        encoding="utf-8",
    )
    return root, sources


def outputs(root: Path) -> dict[str, tuple[int, int]]:
    folder = root / "image" / "2_mytoken woman"
    return {p.name: Image.open(p).size for p in sorted(folder.iterdir()) if p.suffix != ".txt"}


def rejections(result_out: str) -> dict[str, str]:
    data = json.loads(result_out)
    return {Path(r["source"]).name: r["reason"] for r in data["concepts"][0]["rejected"]}


def test_crop_mode_and_a_second_run_that_does_nothing(prepared, cli):
    root, sources = prepared
    before = fingerprint(sources)
    result = cli("prep", root, "--json", "--mode", "crop")
    assert result.code == 0, result.err
    rejected = rejections(result.out)
    assert rejected["truncated.jpg"].startswith("truncated")
    assert rejected["tiny.png"].startswith("too small: 60×60")
    assert rejected["copy.png"] == "exact duplicate of original.png"
    assert rejected["smaller.jpg"].startswith("near-duplicate of original.png")
    assert rejected["panorama.png"].startswith("extreme aspect ratio 1200×200")
    assert len(rejected) == 5
    assert outputs(root) == {
        name: (RES, RES)
        for name in (
            "animated.png",
            "cmyk.png",
            "original.png",
            "photo.png",
            "rotated.png",
            "sixteen.png",
            "transparent.png",
        )
    }
    folder = root / "image" / "2_mytoken woman"
    assert (folder / "rotated.txt").read_text(encoding="utf-8") == "mytoken woman, sideways photo"
    assert fingerprint(sources) == before  # not a byte or a timestamp changed

    # upright: the same as rotating by hand first, then a plain cover-and-centre-crop
    upright = ImageOps.exif_transpose(Image.open(sources / "rotated.jpg")).convert("RGB")
    scale = RES / min(upright.size)
    reference = upright.resize((round(upright.width * scale), round(upright.height * scale)), Image.Resampling.LANCZOS)
    left, top = (reference.width - RES) // 2, (reference.height - RES) // 2
    reference = reference.crop((left, top, left + RES, top + RES))
    ours = Image.open(folder / "rotated.png").convert("RGB")
    diff = sum(abs(a - b) for a, b in zip(ours.tobytes(), reference.tobytes(), strict=True)) / (RES * RES * 3)
    assert diff < 4, diff
    assert Image.open(folder / "transparent.png").getpixel((2, 2)) == (255, 255, 255)  # not black
    assert Image.open(folder / "rotated.png").mode == "RGB" and "exif" not in Image.open(folder / "rotated.png").info

    manifest = json.loads((root / "prep.json").read_text(encoding="utf-8"))
    entries = {Path(e["source"]).name: e for e in manifest["concepts"]["mytoken"]["images"]}
    assert "EXIF orientation 6 applied" in entries["rotated.jpg"]["ops"]
    assert "first frame of 2" in entries["animated.gif"]["ops"] and "16-bit → 8-bit" in entries["sixteen.png"]["ops"]
    assert any(op.startswith("alpha composited") for op in entries["transparent.png"]["ops"])
    assert "CMYK → RGB" in entries["cmyk.jpg"]["ops"]
    assert len(entries["original.png"]["sha256"]) == 64 and entries["original.png"]["output_size"] == [RES, RES]

    stamps = fingerprint(folder)
    again = cli("prep", root, "--mode", "crop")
    assert again.code == 0 and "0 written" in again.out and "12 unchanged" in again.out
    assert fingerprint(folder) == stamps


@pytest.mark.parametrize("mode", ["fit", "bucket", "none"])
def test_other_modes(prepared, cli, mode):
    root, sources = prepared
    result = cli("prep", root, "--mode", mode, "--json", "--workers", "2")
    assert result.code == 0, result.err
    sizes = outputs(root)
    if mode == "fit":
        assert set(sizes.values()) == {(RES, RES)}
        assert Image.open(root / "image" / "2_mytoken woman" / "photo.png").getpixel((128, 5)) == (
            0,
            0,
            0,
        )  # 600×400 padded
    elif mode == "bucket":
        from kohya_wrap.sdscripts.stepmath import BucketSelector, BucketSettings

        selector = BucketSelector(BucketSettings((RES, RES), True, 128, 512, 64, False))
        assert sizes["photo.png"] == selector.select(600, 400) and sizes["rotated.png"] == selector.select(320, 480)
        assert all(w % 64 == 0 and h % 64 == 0 for w, h in sizes.values())
    else:
        assert sizes["photo.png"] == (600, 400) and sizes["rotated.png"] == (320, 480)


def test_jpeg_output_and_entropy_focus(prepared, cli):
    root, _ = prepared
    result = cli("prep", root, "--format", "jpg", "--focus", "entropy")
    assert result.code == 0, result.err
    assert set(outputs(root)) >= {"photo.jpg", "rotated.jpg"}


def test_bad_input(prepared, cli, tmp_path):
    root, _ = prepared
    assert cli("prep", root, "--concept", "nobody").code == 2
    spec = root / "kohya-wrap.toml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("source = ")) + "\n", encoding="utf-8"
    )
    missing = cli("prep", root)
    assert missing.code == 2 and "has no source folder" in missing.err and "Traceback" not in missing.err
    spec.write_text(spec.read_text(encoding="utf-8") + '[prep]\nbackground = "white"\n', encoding="utf-8")
    color = cli("prep", root)
    assert color.code == 2 and "prep.background" in color.err and "not a #rrggbb colour" in color.err
    assert cli("prep", root, "--source", tmp_path / "nowhere").code == 2


def _psnr(a: Image.Image, b: Image.Image) -> float:
    import math

    from PIL import ImageChops

    histogram = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).histogram()
    mse = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram)) / (a.width * a.height * 3)
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize("mode", ["crop", "bucket", "fit"])
def test_libvips_and_pillow_engines_give_the_same_image(tmp_path, mode):
    """A large sideways camera JPEG with a non-sRGB colour profile: libvips' shrink-on-load path and
    Pillow's draft path decode at the same reduced scale, apply the orientation and the profile, and
    agree on size and (within resampling differences) on every pixel."""
    from PIL import ImageCms

    from kohya_wrap.dataset.images import PrepSettings, prepare_one, vips
    from kohya_wrap.sdscripts.stepmath import BucketSettings

    if vips() is None:
        pytest.skip("pyvips is not installed")
    exif = Image.Exif()
    exif[0x0112] = 6
    profile = wide_gamut_profile()  # not sRGB: must be converted
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile))).strip() == "Wide gamut test"
    source = tmp_path / "相机 photo.jpg"
    picture((2400, 1600), 11).save(source, quality=95, exif=exif.tobytes(), icc_profile=profile)
    buckets = BucketSettings((RES, RES), True, 128, 512, 64, False)
    made = {}
    for engine in ("vips", "pillow"):
        settings = PrepSettings(
            mode=mode, size=(RES, RES), engine=engine, buckets=buckets if mode == "bucket" else None
        )
        result = prepare_one(str(source), str(tmp_path / f"{engine}.png"), settings)
        assert result.status == "ok", result.reason
        assert result.source_size == (1600, 2400)  # upright
        assert "EXIF orientation 6 applied" in result.ops and any(op.startswith("colour profile") for op in result.ops)
        made[engine] = (Image.open(tmp_path / f"{engine}.png"), result.ops)
    vips_image, vips_ops = made["vips"]
    pillow_image, pillow_ops = made["pillow"]
    # crop covers 256 px of the 1600 px side: 1/2 scale (800) keeps ≥ 2×, 1/4 (400) would not; fit
    # needs 256 px of the 2400 px side: 1/4 (600) keeps ≥ 2×
    shrink = 4 if mode == "fit" else 2
    assert f"decoded at 1/{shrink} scale (libvips)" in vips_ops and f"decoded at 1/{shrink} scale" in pillow_ops
    assert vips_image.size == pillow_image.size
    if mode == "bucket":
        from kohya_wrap.sdscripts.stepmath import BucketSelector

        assert vips_image.size == BucketSelector(buckets).select(1600, 2400)
    else:
        assert vips_image.size == (RES, RES)
    assert _psnr(vips_image, pillow_image) > 30
    # upright really means upright: the picture's top-left corner stored sideways is now top-right
    assert "exif" not in vips_image.info


def test_heic_and_avif_sources(tmp_path, monkeypatch):
    """iPhone HEIC (through the optional pillow-heif) and AVIF are read; without the plugin a HEIC is
    rejected with what to install, not skipped silently."""
    from kohya_wrap.dataset import images as prep_module
    from kohya_wrap.dataset.images import PrepSettings, format_support, prepare_one

    settings = PrepSettings(mode="crop", size=(128, 128))
    if format_support(".avif") is None:
        picture((300, 200), 13).save(tmp_path / "a.avif", quality=90)
        result = prepare_one(str(tmp_path / "a.avif"), str(tmp_path / "a.png"), settings)
        assert result.status == "ok" and result.output_size == (128, 128), result.reason
    try:
        import pillow_heif
    except ImportError:
        pytest.skip("pillow-heif is not installed (pip install 'kohya-wrap[heic]')")
    pillow_heif.register_heif_opener()
    picture((300, 200), 14).save(tmp_path / "IMG_0001.HEIC", quality=90)
    result = prepare_one(str(tmp_path / "IMG_0001.HEIC"), str(tmp_path / "heic.png"), settings)
    assert result.status == "ok" and Image.open(tmp_path / "heic.png").size == (128, 128), result.reason

    format_support.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "pillow_heif", None)  # as if not installed
    result = prepare_one(str(tmp_path / "IMG_0001.HEIC"), str(tmp_path / "heic2.png"), settings)
    assert result.status == "rejected" and "pip install 'kohya-wrap[heic]'" in result.reason
    format_support.cache_clear()
    assert prep_module.format_support(".jpg") is None


def test_ctrl_c_leaves_only_whole_images(tmp_path):
    """Ctrl-C while the pool works: the images in hand finish, no new ones start, and every file in the
    training folder is a whole image (no temporary or half-written file)."""
    from kohya_wrap.dataset.prep import PrepSettings, prep_concept

    source = tmp_path / "src"
    source.mkdir()
    for index in range(24):
        picture((1200, 900), 20 + index).save(source / f"p{index:02d}.jpg", quality=90)
    seen = []

    def interrupt(result):
        seen.append(result)
        if len(seen) == 3:
            raise KeyboardInterrupt

    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prep_concept("c", source, target, PrepSettings(mode="crop", size=(128, 128)), {}, 0, 2, on_done=interrupt)
    written = sorted(target.iterdir())
    # the 3 reported, those done but not yet reported and the 2 in hand finish; the queued 18+ never start
    assert 3 <= len(written) <= 12
    for path in written:
        assert path.suffix == ".png" and Image.open(path).size == (128, 128)


def test_of_two_near_duplicates_of_one_size_the_better_file_is_kept(tmp_path):
    """A phone's photo and a re-saved copy of it: same size, so the copy (first by name) used to win;
    the larger file — the less compressed one — is kept."""
    from kohya_wrap.dataset.images import PrepResult
    from kohya_wrap.dataset.prep import _dedupe

    original = PrepResult("IMG_0001 照片.jpg", "a", dhash=0b1011, pixels=1200 * 900, bytes=180_000)
    copy = PrepResult("IMG_0001 copy.jpg", "b", dhash=0b1011, pixels=1200 * 900, bytes=60_000)
    results = sorted([original, copy], key=lambda r: r.source)
    _dedupe(results, 5)
    assert original.status == "ok" and copy.status == "rejected"
    assert copy.reason.startswith("near-duplicate of IMG_0001 照片.jpg")


def test_a_duplicate_comes_back_when_the_photo_it_duplicated_is_gone(prepared, cli):
    """Which of two duplicates trains depends on the set of sources: a photo rejected as a duplicate is
    decided again on every prep, so removing the kept one from the source brings the other in (it was
    skipped as "unchanged, rejected" forever)."""
    root, sources = prepared
    first = rejections(cli("prep", root, "--json", "--mode", "crop").out)
    assert first["copy.png"] == "exact duplicate of original.png"
    assert first["smaller.jpg"].startswith("near-duplicate of original.png")
    (sources / "original.png").unlink()
    second = cli("prep", root, "--json", "--mode", "crop")
    assert "copy.png" not in rejections(second.out)
    assert rejections(second.out)["smaller.jpg"].startswith("near-duplicate of copy.png")
    (sources / "sub" / "copy.png").unlink()
    third = cli("prep", root, "--json", "--mode", "crop")
    assert "smaller.jpg" not in rejections(third.out) and "smaller.png" in outputs(root)
