"""What the imitation of Instagram is made of: its faults, its request log, its generated posts
and their image bytes (see :mod:`.fake_instagram`)."""

from __future__ import annotations

import base64
import dataclasses
import io
from pathlib import Path

from .. import config


@dataclasses.dataclass
class Fault:
    """Answer ``count`` requests to ``endpoint`` wrongly, after the first ``after`` of them.

    ``kind``: ``429`` (with ``Retry-After: retry_after`` unless it is None), ``500``, ``slow``
    (wait ``delay`` seconds, then answer normally), ``truncate`` (an image body cut short: the
    connection closes before ``Content-Length`` bytes), ``html`` (an HTML page where JSON is
    expected), ``login_redirect`` (302 to /accounts/login/), ``login_required`` (403),
    ``checkpoint`` (400 checkpoint_required), ``please_wait`` (401 without ``require_login``: a
    soft block), ``locked`` (401 "Please wait a few minutes" with ``require_login``: the session
    is no longer accepted), ``status_fail`` (200 with ``"status": "fail"``), ``repeat`` (a
    ``sections/`` page answered with the page before it and the cursor it was asked with),
    ``echo_cookie`` (400 whose message repeats the request's Cookie header), ``huge`` (a JSON
    answer of ``size`` bytes), ``redirect`` (an image answered with a 302 to ``location``),
    ``missing_query_id`` (a Commons bundle without the query id).
    ``endpoint``: ``api`` (every non-image request), ``page``, ``graphql``, ``web`` (every
    ``/api/v1/`` request), ``web_info``, ``sections``, ``media_info``, ``image`` or ``any``.
    ``count=None`` means every request from then on.
    """

    kind: str
    endpoint: str = "api"
    count: int | None = 1
    after: int = 0
    retry_after: float | str | None = 1
    delay: float = 2.0
    location: str = ""
    size: int = 0


@dataclasses.dataclass(frozen=True)
class LoggedRequest:
    t: float  # time.monotonic() when the request arrived
    method: str
    path: str
    query: dict
    form: dict
    endpoint: str
    status: int
    fault: str | None
    has_session: bool
    app_id: str | None
    user_agent: str | None
    csrf: str | None


@dataclasses.dataclass(frozen=True)
class FakePost:
    index: int
    shortcode: str
    media_id: str
    owner_id: str
    username: str
    taken_at: int
    caption: str | None
    kind: str  # image, video, carousel
    image_keys: tuple[str, ...]

    def images(self, api: str) -> tuple[str, ...]:
        """The image keys a client should store for this post (legacy feeds list one per post)."""
        return self.image_keys[:1] if api == "legacy" else self.image_keys


def _default_image_paths() -> list[Path]:
    people = config.PROJECT_ROOT.parent / "shared" / "data" / "faces" / "people"
    if people.is_dir():
        files = sorted(p for p in people.rglob("*.jpg"))
        files.sort(key=lambda p: p.stat().st_size)
        return files[:6]
    return []


def _synthetic_images(n: int = 4) -> list[bytes]:
    from PIL import Image

    out = []
    for i in range(n):
        im = Image.new("RGB", (96, 96), (40 * i % 256, 90, 200 - 30 * i))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def _as_jpeg(data: bytes) -> bytes:
    if data[:3] == b"\xff\xd8\xff":
        return data
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: other bytes, same pixels."""
    comment = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text.encode()).decode()


