"""Posts of a hashtag feed, parsed from every API generation's answers."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from ...errors import InstagramError, LoginRequired

_SHARED_DATA_RE = re.compile(r"window\._sharedData\s*=\s*(.+?);</script>", re.S)
_BUNDLE_RE = re.compile(r"(/static/bundles/(?:[\w-]+/)?en_US_Commons\.js/\w+\.js)")
_QUERY_ID_RES = (re.compile(r'byTagName\.get\(t\)\.pagination},queryId:"(\d+)",queryParams'),
                 re.compile(r'c="(\d+)",l="TAG_MEDIA_UPDATED"'))



class _Retry(Exception):
    def __init__(self, kind: str, message: str, wait: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.wait = wait



@dataclasses.dataclass(frozen=True)
class Post:
    """One post of a hashtag feed, whatever the API generation."""

    shortcode: str
    media_id: str | None
    owner_id: str | None
    username: str | None
    taken_at: int | None  # unix seconds
    caption: str | None
    media_type: str  # image, video, carousel
    image_urls: tuple[str, ...]

    def meta(self, n: int, hashtag: str, api: str, fetched_at: str) -> dict[str, Any]:
        taken = (datetime.fromtimestamp(self.taken_at, timezone.utc).isoformat(timespec="seconds")
                 if self.taken_at is not None else None)
        return {"shortcode": self.shortcode, "media_id": self.media_id, "owner_id": self.owner_id,
                "username": self.username, "taken_at": taken, "caption": self.caption, "hashtag": hashtag,
                "media_type": self.media_type, "image_number": n, "image_count": len(self.image_urls),
                "image_url": self.image_urls[n], "fetched_at": fetched_at, "api": api}


def _str_or_none(value) -> str | None:
    return None if value is None else str(value)


def post_from_node(node: Mapping[str, Any]) -> Post | None:
    """A legacy feed node (early-2017 ``media.nodes[]`` or later ``edges[].node``) as a Post."""
    shortcode = node.get("shortcode") or node.get("code")
    url = node.get("display_url") or node.get("display_src")
    if not shortcode or not url:
        return None
    caption = node.get("caption")
    if caption is None:
        edges = (node.get("edge_media_to_caption") or {}).get("edges") or []
        caption = edges[0]["node"].get("text") if edges else None
    children = [e["node"].get("display_url") for e in (node.get("edge_sidecar_to_children") or {}).get("edges", [])]
    children = [c for c in children if c]
    typename = node.get("__typename")
    media_type = ("video" if node.get("is_video") or typename == "GraphVideo"
                  else "carousel" if typename == "GraphSidecar" else "image")
    taken = node.get("taken_at_timestamp", node.get("date"))
    return Post(shortcode=str(shortcode), media_id=_str_or_none(node.get("id")),
                owner_id=_str_or_none((node.get("owner") or {}).get("id")),
                username=(node.get("owner") or {}).get("username"), taken_at=int(taken) if taken is not None else None,
                caption=caption, media_type=media_type, image_urls=tuple(children or [url]))


def _best_image(item: Mapping[str, Any]) -> str | None:
    candidates = (item.get("image_versions2") or {}).get("candidates") or []
    if not candidates:
        return None
    best = max(candidates, key=lambda c: (c.get("width") or 0) * (c.get("height") or 0))
    return best.get("url")


def post_from_media(media: Mapping[str, Any]) -> Post | None:
    """A web API media item (``Post.from_iphone_struct`` in instaloader) as a Post."""
    shortcode = media.get("code")
    if not shortcode:
        return None
    kind = {1: "image", 2: "video", 8: "carousel"}.get(media.get("media_type"), "image")
    urls: list[str] = []
    if kind == "carousel":
        urls = [u for u in (_best_image(c) for c in media.get("carousel_media") or []) if u]
    if not urls:
        top = _best_image(media) or (_best_image((media.get("carousel_media") or [{}])[0]) if media.get("carousel_media") else None)
        urls = [top] if top else []
    if not urls:
        return None
    user = media.get("user") or {}
    caption = media.get("caption")
    taken = media.get("taken_at")
    return Post(shortcode=str(shortcode), media_id=_str_or_none(media.get("pk")),
                owner_id=_str_or_none(user.get("pk") or user.get("id")), username=user.get("username"),
                taken_at=int(taken) if taken is not None else None,
                caption=caption.get("text") if isinstance(caption, dict) else None, media_type=kind,
                image_urls=tuple(urls))


def posts_from_feed(feed: Mapping[str, Any]) -> list[Post]:
    """Posts of a web feed (``data.recent``): every section's medias, fill items and clips."""
    out: list[Post] = []
    for section in feed.get("sections") or []:
        content = section.get("layout_content") or {}
        items = [m.get("media") for m in content.get("medias") or []]
        items += [m.get("media") for m in content.get("fill_items") or []]
        clips = ((content.get("one_by_two_item") or {}).get("clips") or {}).get("items") or []
        items += [m.get("media") for m in clips]
        out += [p for p in (post_from_media(m) for m in items if m) if p]
    return out


def parse_shared_data(html: str) -> dict[str, Any]:
    """``window._sharedData`` of a legacy HTML page."""
    m = _SHARED_DATA_RE.search(html)
    if m is None:
        raise _Retry("no_shared_data", "the page holds no window._sharedData")
    try:
        return json.loads(m.group(1))
    except ValueError:
        raise _Retry("no_shared_data", "window._sharedData is not valid JSON") from None


def parse_tag_page(shared: Mapping[str, Any]) -> tuple[list[Post], dict[str, Any]]:
    """Posts and ``page_info`` of a legacy tag page, in either 2017 shape."""
    entry = shared.get("entry_data") or {}
    if "LoginAndSignupPage" in entry and "TagPage" not in entry:
        raise LoginRequired(_login_message(False), kind="login_required")
    pages = entry.get("TagPage") or []
    if not pages:
        raise InstagramError("the tag page holds no TagPage data (the hashtag may not exist)", kind="not_found")
    page = pages[0]
    if "graphql" in page:
        media = page["graphql"]["hashtag"]["edge_hashtag_to_media"]
        nodes = [e["node"] for e in media.get("edges") or []]
    elif "tag" in page:
        media = page["tag"]["media"]
        nodes = media.get("nodes") or []
    else:
        raise InstagramError(f"unknown tag page shape: {sorted(page)}", kind="bad_response")
    return [p for p in map(post_from_node, nodes) if p], dict(media.get("page_info") or {})


def find_query_id(js: str) -> str | None:
    """The hashtag ``query_id`` in a Commons bundle (IFFSE's two patterns)."""
    for pattern in _QUERY_ID_RES:
        m = pattern.search(js)
        if m:
            return m.group(1)
    return None


def _login_message(had_cookies: bool) -> str:
    if had_cookies:
        return ("Instagram redirected to its login page although session cookies were given: they have "
                "expired or the session was logged out. Log in to instagram.com in a browser, export the "
                "cookies again and pass the new file with --cookies (cookies= in Python).")
    return ("Instagram redirected to its login page: hashtag feeds need a logged-in session. Export your "
            "browser's instagram.com cookies (Netscape cookies.txt or JSON) and pass the file with --cookies "
            "FILE (cookies= in Python). See 'Collecting from Instagram' in README.md.")

