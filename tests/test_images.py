"""Safe image loading: colour modes, EXIF orientation, and each kind of bad file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from iffse_lib import images, pipeline
from iffse_lib.catalog import Catalog
from iffse_lib.errors import BadImage
from iffse_lib.sources.folder import FolderSource

from conftest import FACES

PHOTO = FACES / "people" / "obama" / "facerec_obama.jpg"


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(PHOTO).convert("RGB")


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgb_jpeg_loads_as_uint8_rgb(photo):
    arr = images.load_image(PHOTO)
    assert arr.dtype == np.uint8 and arr.shape == (photo.height, photo.width, 3)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK", "I;16"])
def test_colour_modes_become_rgb(photo, mode):
    if mode == "I;16":
        grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        im = Image.fromarray(grey.astype("<u2"))
        assert im.mode.startswith("I;16")
        data = _encode(im, "PNG")
        assert Image.open(io.BytesIO(data)).mode.startswith("I")
    elif mode == "CMYK":
        data = _encode(photo.convert("CMYK"), "JPEG", quality=95)
    else:
        data = _encode(photo.convert(mode), "PNG")
    arr = images.load_image(data)
    assert arr.shape == (photo.height, photo.width, 3) and arr.dtype == np.uint8
    # The content survives the conversion: close to the greyscale of the original.
    grey_ref = np.asarray(photo.convert("L"), dtype=np.float32)
    grey_out = np.asarray(Image.fromarray(arr).convert("L"), dtype=np.float32)
    assert np.abs(grey_ref - grey_out).mean() < 12


def test_transparent_pixels_become_white(photo):
    rgba = photo.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:10, :10, 3] = 0
    arr = images.load_image(_encode(Image.fromarray(a, "RGBA"), "PNG"))
    assert (arr[:10, :10] == 255).all()


def test_exif_orientation_is_applied(photo):
    # A camera that stored the pixels turned and set Orientation=6 ("rotate 90 CW to view").
    stored = photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    arr = images.load_image(data)
    assert arr.shape == (photo.height, photo.width, 3)
    assert np.abs(arr.astype(np.float32) - np.asarray(photo, dtype=np.float32)).mean() < 6


def _bad_files(tmp_path, photo):
    good = _encode(photo, "JPEG", quality=90)
    files = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "not_image": b"<html><body>this is not a photo</body></html>\n" * 20,
    }
    # 7,000 x 6,000 black pixels: a tiny PNG that would decode to 42 megapixels.
    bomb = io.BytesIO()
    Image.new("L", (7_000, 6_000)).save(bomb, "PNG", optimize=False)
    files["too_large"] = bomb.getvalue()
    for kind, data in files.items():
        (tmp_path / f"{kind}.jpg").write_bytes(data)
    return files


def test_each_bad_kind_raises_its_kind(tmp_path, photo):
    for kind in _bad_files(tmp_path, photo):
        with pytest.raises(BadImage) as info:
            images.load_image(tmp_path / f"{kind}.jpg")
        assert info.value.kind == kind, (kind, str(info.value))
        assert f"{kind}.jpg" in str(info.value)


def test_collect_records_bad_files_and_goes_on(tmp_path, photo):
    folder = tmp_path / "photos"
    folder.mkdir()
    bad = _bad_files(folder, photo)
    (folder / "good.jpg").write_bytes(PHOTO.read_bytes())
    (folder / "copy_of_good.jpg").write_bytes(PHOTO.read_bytes())
    cat = Catalog(tmp_path / "data")
    counts = pipeline.collect(cat, FolderSource(folder), progress=False)
    assert counts["stored"] == 1 and counts["duplicates"] == 1 and counts["errors"] == len(bad)
    errors = cat.errors()
    assert sorted(errors["kind"]) == sorted(bad)
    for _, row in errors.iterrows():
        assert row["source_id"] == f"{row['kind']}.jpg" and row["stage"] == "collect"
    assert cat.counts()["photos"] == 1
    # Collecting again skips every file, good and bad, and records nothing new.
    again = pipeline.collect(cat, FolderSource(folder), progress=False)
    assert again.get("skipped") == len(bad) + 2 and len(cat.errors()) == len(bad)
    # The stored file is the original bytes, named by their sha256.
    stored = cat.photos().iloc[0]
    assert open(stored["path"], "rb").read() == PHOTO.read_bytes()
    assert stored["path"].endswith(f"{stored['sha256']}.jpg")
