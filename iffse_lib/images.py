"""Safe image loading: EXIF orientation, colour modes, size limits.

Every photo iffse reads goes through :func:`load_image`, which returns an (H, W, 3) uint8 RGB
array or raises :class:`~iffse_lib.errors.BadImage` with a ``kind`` and a plain message:

``empty``       a zero-byte file
``too_large``   more than ``config.MAX_FILE_BYTES`` bytes, or more than ``config.MAX_PIXELS``
                pixels (a decompression bomb); checked from the header, before decoding
``not_image``   bytes that no decoder recognises (a text file named .jpg)
``truncated``   a file that ends before its image data does
``unsupported`` a recognised format whose pixels cannot be made RGB
``not_file``    a folder, FIFO or device rather than a regular file (never read)
``missing``     no such file
``unreadable``  the file cannot be opened or read (permissions, I/O error)
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import config
from .errors import BadImage


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        # Composite transparent pixels onto white rather than black.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: scale to 8 bits over the full range of the type.
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr8 = np.zeros(arr.shape, np.uint8) if hi <= lo else ((arr - lo) / (hi - lo) * 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX ... Pillow converts these itself.
    return im.convert("RGB")


def read_photo_file(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of a photo file, read only if it is a regular file of at most ``limit`` bytes
    (default ``config.MAX_FILE_BYTES``): a folder, a FIFO, a device such as ``/dev/zero`` or a
    file that is too large raises BadImage without being read (and without blocking)."""
    path = Path(path)
    limit = config.MAX_FILE_BYTES if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        kind = "missing" if exc.errno == errno.ENOENT else "unreadable"
        raise BadImage(f"{path}: cannot read ({exc.strerror})", kind=kind) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise BadImage(f"{path}: {what}, not a photo", kind="not_file")
        if st.st_size > limit:
            raise BadImage(f"{path}: {st.st_size:,} bytes is over the {limit:,}-byte limit", kind="too_large")
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise BadImage(f"{path}: cannot read ({exc.strerror})", kind="unreadable") from None
    if len(data) > limit:  # it grew while we read it
        raise BadImage(f"{path}: more than the {limit:,}-byte limit", kind="too_large")
    return data


def open_image(source: bytes | str | Path) -> Image.Image:
    """Decode ``source`` (bytes or a path) into an upright RGB PIL image, or raise BadImage."""
    if isinstance(source, (str, Path)):
        name = str(source)
        data = read_photo_file(source)
    else:
        data, name = bytes(source), "image"
    if not data:
        raise BadImage(f"{name}: the file is empty (0 bytes)", kind="empty")
    if len(data) > config.MAX_FILE_BYTES:
        raise BadImage(f"{name}: {len(data):,} bytes is over the {config.MAX_FILE_BYTES:,}-byte limit",
                       kind="too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise BadImage(f"{name}: {exc}", kind="too_large") from None
    except UnidentifiedImageError:
        raise BadImage(f"{name}: not an image file (no decoder recognises its bytes)", kind="not_image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImage(f"{name}: not a readable image ({exc})", kind="not_image") from None
    width, height = im.size
    if width * height > config.MAX_PIXELS:
        raise BadImage(
            f"{name}: {width}x{height} = {width * height:,} pixels is over the {config.MAX_PIXELS:,}-pixel "
            "limit (a possible decompression bomb)", kind="too_large")
    if width == 0 or height == 0:
        raise BadImage(f"{name}: the image has no pixels ({width}x{height})", kind="not_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
    except (OSError, SyntaxError, EOFError) as exc:
        msg = str(exc)
        if "truncated" in msg or "image file is truncated" in msg or isinstance(exc, EOFError) or "broken data stream" in msg:
            raise BadImage(f"{name}: the file is truncated ({msg})", kind="truncated") from None
        raise BadImage(f"{name}: cannot decode the image ({msg})", kind="not_image") from None
    except (ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise BadImage(f"{name}: cannot convert the image to RGB ({exc})", kind="unsupported") from None


def load_image(source: bytes | str | Path) -> np.ndarray:
    """Decode ``source`` into an upright (H, W, 3) uint8 RGB array, or raise BadImage."""
    return np.ascontiguousarray(np.asarray(open_image(source), dtype=np.uint8))


def guess_extension(data: bytes) -> str:
    """A file extension for encoded image bytes, from their magic number ('.jpg' when unsure)."""
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[:2] == b"BM":
        return ".bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    return ".jpg"
