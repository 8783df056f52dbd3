"""Posts of a hashtag feed, parsed from every API generation's answers.

Parsers are strict about the fields iffse stores: a post whose ``taken_at`` is 1e20 or
"yesterday", or whose width is a string, raises :class:`~iffse_lib.errors.BadPost` with its
shortcode, so that the crawl records it and goes on (see :func:`parse_feed`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from datetime import datetime, timezone
from typing import Any, Mapping

from ...errors import BadPost, InstagramError, LoginRequired, RetryableAnswer

_SHARED_DATA_RE = re.compile(r"window\._sharedData\s*=\s*(.+?);</script>", re.S)
#: The Commons bundle a legacy tag page references: ``en_US_Commons.js`` (early 2017) or
#: ``ConsumerCommons.js`` (late 2017).
_BUNDLE_RE = re.compile(r"(/static/bundles/(?:[\w-]+/)?(?:en_US_Commons|ConsumerCommons)\.js/\w+\.js)")
#: IFFSE's patterns for the hashtag query_id, tried in its order.
_QUERY_ID_RES = (re.compile(r'c="(\d+)",l="TAG_MEDIA_UPDATED"'),
                 re.compile(r'byTagName\.get\(t\)\.pagination},queryId:"(\d+)",queryParams'))
_HASHTAG_RE = re.compile(r"#(\w+)")
_MENTION_RE = re.compile(r"@([A-Za-z0-9_.]+)")
#: Plausible ``taken_at`` values: 2010-01-01 to 2100-01-01 (Instagram opened in October 2010).
_TAKEN_RANGE = (1262304000, 4102444800)


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
    like_count: int | None = None
    comment_count: int | None = None
    location: str | None = None
    width: int | None = None
    height: int | None = None
    accessibility_caption: str | None = None
    product_type: str | None = None
    tab: str | None = None  # web: recent or top

    @property
    def key(self) -> str:
        """What the crawl counts a post by: its media id (pk), else its shortcode."""
        return self.media_id or self.shortcode

    def meta(self, n: int, hashtag: str, api: str, fetched_at: str) -> dict[str, Any]:
        taken = (datetime.fromtimestamp(self.taken_at, timezone.utc).isoformat(timespec="seconds")
                 if self.taken_at is not None else None)
        text = self.caption or ""
        return {"shortcode": self.shortcode, "media_id": self.media_id, "owner_id": self.owner_id,
                "username": self.username, "taken_at": taken, "caption": self.caption, "hashtag": hashtag,
                "media_type": self.media_type, "image_number": n, "image_count": len(self.image_urls),
                "image_url": self.image_urls[n], "fetched_at": fetched_at, "api": api,
                "like_count": self.like_count, "comment_count": self.comment_count,
                "hashtags": sorted({t.lower() for t in _HASHTAG_RE.findall(text)}),
                "mentions": sorted({m.rstrip(".").lower() for m in _MENTION_RE.findall(text)}),
                "location": self.location, "original_width": self.width, "original_height": self.height,
                "accessibility_caption": self.accessibility_caption, "product_type": self.product_type,
                "tab": self.tab}


def url_expiry(url: str) -> int | None:
    """The unix time a signed CDN URL expires at (its ``oe=`` hex parameter), or None."""
    for value in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("oe", []):
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None


# -- field checks ---------------------------------------------------------------------------
def _str_or_none(value) -> str | None:
    return None if value is None else str(value)


def _int(shortcode, name: str, value, lo: int = 0, hi: int = 2 ** 53) -> int | None:
    """``value`` as an int in [lo, hi], None when absent; BadPost when it is anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or not lo <= value <= hi:
        raise BadPost(f"post {shortcode}: {name} is {str(value)[:40]!r}, not a number in range", shortcode=shortcode)
    return int(value)


def _text(shortcode, name: str, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadPost(f"post {shortcode}: {name} is a {type(value).__name__}, not text", shortcode=shortcode)
    return value


def _url(shortcode, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadPost(f"post {shortcode}: an image URL is a {type(value).__name__}, not text", shortcode=shortcode)
    return value


def _shortcode(value) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise BadPost(f"a post's shortcode is {str(value)[:40]!r}", shortcode=None)
    return value


def _taken(shortcode, value) -> int | None:
    return _int(shortcode, "taken_at", value, *_TAKEN_RANGE)


# -- legacy (2017) --------------------------------------------------------------------------
def post_from_node(node: Mapping[str, Any]) -> Post | None:
    """A legacy feed node (early-2017 ``media.nodes[]`` or later ``edges[].node``) as a Post."""
    if not isinstance(node, Mapping):
        raise BadPost(f"a feed node is a {type(node).__name__}, not an object", shortcode=None)
    shortcode = _shortcode(node.get("shortcode") or node.get("code"))
    url = _url(shortcode, node.get("display_url") or node.get("display_src"))
    if not shortcode or not url:
        return None
    caption = node.get("caption")
    if caption is None:
        edges = (node.get("edge_media_to_caption") or {}).get("edges") or []
        caption = edges[0]["node"].get("text") if edges else None
    children = [_url(shortcode, e["node"].get("display_url"))
                for e in (node.get("edge_sidecar_to_children") or {}).get("edges", [])]
    children = [c for c in children if c]
    typename = node.get("__typename")
    media_type = ("video" if node.get("is_video") or typename == "GraphVideo"
                  else "carousel" if typename == "GraphSidecar" else "image")
    owner = node.get("owner") or {}
    dims = node.get("dimensions") or {}
    likes = (node.get("edge_liked_by") or node.get("edge_media_preview_like") or node.get("likes") or {}).get("count")
    comments = (node.get("edge_media_to_comment") or node.get("comments") or {}).get("count")
    return Post(shortcode=shortcode, media_id=_str_or_none(node.get("id")), owner_id=_str_or_none(owner.get("id")),
                username=_text(shortcode, "username", owner.get("username")),
                taken_at=_taken(shortcode, node.get("taken_at_timestamp", node.get("date"))),
                caption=_text(shortcode, "caption", caption), media_type=media_type, image_urls=tuple(children or [url]),
                like_count=_int(shortcode, "like count", likes), comment_count=_int(shortcode, "comment count", comments),
                width=_int(shortcode, "width", dims.get("width")), height=_int(shortcode, "height", dims.get("height")),
                accessibility_caption=_text(shortcode, "accessibility_caption", node.get("accessibility_caption")))


def parse_shared_data(html: str) -> dict[str, Any]:
    """``window._sharedData`` of a legacy HTML page."""
    m = _SHARED_DATA_RE.search(html)
    if m is None:
        raise RetryableAnswer("the page holds no window._sharedData", kind="no_shared_data")
    try:
        return json.loads(m.group(1))
    except ValueError:
        raise RetryableAnswer("window._sharedData is not valid JSON", kind="no_shared_data") from None


def parse_tag_page(shared: Mapping[str, Any]) -> tuple[list[Post], dict[str, Any]]:
    """Posts and ``page_info`` of a legacy tag page, in either 2017 shape.

    ``page_info`` gains ``shape``: ``2017`` (``TagPage[0].tag.media``) or ``graphql``.
    """
    entry = shared.get("entry_data") or {}
    if "LoginAndSignupPage" in entry and "TagPage" not in entry:
        raise LoginRequired(_login_message(False), kind="login_required")
    pages = entry.get("TagPage") or []
    if not pages:
        raise InstagramError("the tag page holds no TagPage data (the hashtag may not exist)", kind="not_found")
    page = pages[0]
    if "graphql" in page:
        media = page["graphql"]["hashtag"]["edge_hashtag_to_media"]
        nodes, shape = [e["node"] for e in media.get("edges") or []], "graphql"
    elif "tag" in page:
        media = page["tag"]["media"]
        nodes, shape = media.get("nodes") or [], "2017"
    else:
        raise InstagramError(f"unknown tag page shape: {sorted(page)}", kind="bad_response")
    posts = []
    for node in nodes:
        try:
            post = post_from_node(node)
        except BadPost:
            continue
        if post:
            posts.append(post)
    return posts, {**dict(media.get("page_info") or {}), "shape": shape}


def find_query_id(js: str) -> str | None:
    """The hashtag ``query_id`` in a Commons bundle (IFFSE's patterns, in its order)."""
    for pattern in _QUERY_ID_RES:
        m = pattern.search(js)
        if m:
            return m.group(1)
    return None


# -- today's web API ------------------------------------------------------------------------
def _best_image(shortcode, item: Mapping[str, Any]) -> str | None:
    versions = item.get("image_versions2") or {}
    candidates = versions.get("candidates") if isinstance(versions, Mapping) else None
    if not candidates:
        return None
    if not isinstance(candidates, list) or not all(isinstance(c, Mapping) for c in candidates):
        raise BadPost(f"post {shortcode}: image_versions2.candidates is not a list of objects", shortcode=shortcode)
    best = max(candidates, key=lambda c: (_int(shortcode, "width", c.get("width")) or 0)
               * (_int(shortcode, "height", c.get("height")) or 0))
    return _url(shortcode, best.get("url"))


def post_from_media(media: Mapping[str, Any], tab: str | None = None) -> Post | None:
    """A web API media item (``Post.from_iphone_struct`` in instaloader) as a Post; BadPost when odd."""
    if not isinstance(media, Mapping):
        raise BadPost(f"a media item is a {type(media).__name__}, not an object", shortcode=None)
    shortcode = _shortcode(media.get("code"))
    if not shortcode:
        return None
    kind = {1: "image", 2: "video", 8: "carousel"}.get(media.get("media_type"), "image")
    carousel = media.get("carousel_media") or []
    if not isinstance(carousel, list):
        raise BadPost(f"post {shortcode}: carousel_media is not a list", shortcode=shortcode)
    urls: list[str] = []
    if kind == "carousel":
        urls = [u for u in (_best_image(shortcode, c) for c in carousel if isinstance(c, Mapping)) if u]
    if not urls:
        top = _best_image(shortcode, media) or (_best_image(shortcode, carousel[0]) if carousel else None)
        urls = [top] if top else []
    if not urls:
        return None
    user = media.get("user") or {}
    caption = media.get("caption")
    location = media.get("location")
    if isinstance(location, Mapping):
        location = location.get("name") or location.get("short_name")
    return Post(shortcode=shortcode, media_id=_str_or_none(media.get("pk")),
                owner_id=_str_or_none(user.get("pk") or user.get("id")),
                username=_text(shortcode, "username", user.get("username")),
                taken_at=_taken(shortcode, media.get("taken_at")),
                caption=_text(shortcode, "caption", caption.get("text")) if isinstance(caption, Mapping) else None,
                media_type=kind, image_urls=tuple(urls),
                like_count=_int(shortcode, "like_count", media.get("like_count")),
                comment_count=_int(shortcode, "comment_count", media.get("comment_count")),
                location=_text(shortcode, "location", location),
                width=_int(shortcode, "width", media.get("original_width"), 0, 100_000),
                height=_int(shortcode, "height", media.get("original_height"), 0, 100_000),
                accessibility_caption=_text(shortcode, "accessibility_caption", media.get("accessibility_caption")),
                product_type=_text(shortcode, "product_type", media.get("product_type")), tab=tab)


@dataclasses.dataclass
class FeedPage:
    """One page of a web feed: its posts, the posts that could not be read, and where to go next."""

    posts: list[Post]
    bad: list[BadPost]
    more_available: bool
    next_max_id: str | None
    next_page: int | None
    next_media_ids: list


def _feed_items(feed: Mapping[str, Any]) -> list:
    sections = feed.get("sections")
    if sections is None:
        return []
    if not isinstance(sections, list):
        raise BadPost(f"the page's sections are a {type(sections).__name__}, not a list", shortcode=None)
    items = []
    for section in sections:
        content = section.get("layout_content") if isinstance(section, Mapping) else None
        if not isinstance(content, Mapping):
            continue
        clips = ((content.get("one_by_two_item") or {}).get("clips") or {}).get("items") or []
        for group in (content.get("medias"), content.get("fill_items"), clips):
            if isinstance(group, list):
                items += [m.get("media") for m in group if isinstance(m, Mapping) and m.get("media") is not None]
    return items


def parse_feed(feed: Mapping[str, Any], tab: str | None = None) -> FeedPage:
    """A web feed (``data.recent``, ``data.top`` or a ``sections/`` answer): every section's
    ``medias``, ``fill_items`` and ``one_by_two_item.clips.items``, and the paging fields.

    A post with odd fields goes to ``bad``; odd paging fields end the feed (``more_available`` false).
    """
    bad: list[BadPost] = []
    try:
        items = _feed_items(feed)
    except BadPost as exc:
        bad.append(exc)
        items = []
    posts = []
    for media in items:
        try:
            post = post_from_media(media, tab)
        except BadPost as exc:
            if exc.shortcode is None and isinstance(media, Mapping) and isinstance(media.get("code"), str):
                exc.shortcode = media["code"][:64]
            bad.append(exc)
            continue
        if post:
            posts.append(post)
    next_max_id = feed.get("next_max_id")
    next_page = feed.get("next_page")
    next_media_ids = feed.get("next_media_ids")
    more = feed.get("more_available") is True and isinstance(next_max_id, str) and bool(next_max_id)
    return FeedPage(posts=posts, bad=bad, more_available=more, next_max_id=next_max_id if more else None,
                    next_page=next_page if isinstance(next_page, int) and not isinstance(next_page, bool) else None,
                    next_media_ids=next_media_ids if isinstance(next_media_ids, list) else [])


def posts_from_feed(feed: Mapping[str, Any], tab: str | None = None) -> list[Post]:
    """The readable posts of a web feed (see :func:`parse_feed`)."""
    return parse_feed(feed, tab).posts


def _login_message(had_cookies: bool) -> str:
    if had_cookies:
        return ("Instagram no longer accepts this login session: the cookies have expired, the session was "
                "logged out or Instagram locked it. Log in to instagram.com in a browser, export the cookies "
                "again and pass the new file with --cookies (cookies= in Python).")
    return ("Instagram redirected to its login page: hashtag feeds need a logged-in session. Export your "
            "browser's instagram.com cookies (Netscape cookies.txt or JSON) and pass the file with --cookies "
            "FILE (cookies= in Python). See 'Collecting from Instagram' in README.md.")
