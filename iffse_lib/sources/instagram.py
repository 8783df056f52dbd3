"""Photos of Instagram hashtags, page after page, into the catalogue.

Two API generations (``api=``):

``legacy``  what IFFSE did in 2017: ``GET /explore/tags/<tag>/``, parse ``window._sharedData``
            (the early-2017 ``TagPage[0].tag.media.nodes`` or the late-2017
            ``TagPage[0].graphql.hashtag`` shape), find the hashtag ``query_id`` in the
            ``en_US_Commons.js`` bundle the page references, then
            ``GET /graphql/query/?query_id=…&tag_name=…&first=N&after=<end_cursor>`` until
            ``has_next_page`` is false. Instagram retired these endpoints in 2018-2020; the
            imitation in :mod:`.fake_instagram` still serves them.
``web``     today's web app: ``GET /api/v1/tags/web_info/?tag_name=…`` with the web app's headers
            and a logged-in session's cookies, posts from
            ``data.recent.sections[].layout_content.medias[].media``, further pages from
            ``GET /explore/tags/<tag>/?__a=1&__d=dis&max_id=<next_max_id>`` while
            ``more_available`` (as instaloader does).

Each post's images are stored with ``kind="instagram"`` and ``source_id="<shortcode>/<n>"``
(``n`` the image number in a carousel, 0 otherwise; a video gives its cover image). Image URLs
are signed and expire, so the shortcode is the key: an image whose source id the catalogue
knows is not downloaded again, and identical bytes are stored once.

Politeness: every request waits for a :class:`~.ratelimit.RateLimiter` (sliding windows per
endpoint and a random pause, instaloader's defaults), has a timeout, and is retried a bounded
number of times with exponential backoff after 5xx answers, timeouts, cut connections, HTML where
JSON was expected and ``"status": "fail"``; ``429`` waits for ``Retry-After`` (or for the window to
free), ``401`` "Please wait a few minutes" waits ``soft_block_wait``. A redirect to the login page or
``login_required`` raises :class:`LoginRequired`; ``checkpoint_required``/``challenge_required``
raise :class:`CheckpointRequired`.

Session cookies (:class:`SessionCookies`) are secrets: they are sent only to ``base_url``, never
to the image host, and never appear in the catalogue, in messages or in reprs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import email.utils
import json
import random
import re
import threading
import time
import urllib.parse
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .. import config, images
from ..errors import BadImage, IffseError, SourceError
from ..records import PhotoRecord
from .ratelimit import RateLimiter

KIND = "instagram"
API_GENERATIONS = ("legacy", "web")
DEFAULT_BASE_URL = "https://www.instagram.com"
#: A current desktop browser's User-Agent (the web API expects a browser).
DEFAULT_USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/131.0.0.0 Safari/537.36")
WEB_APP_ID = "936619743392459"  # instagrapi PUBLIC_WEB_APP_ID, sent by www.instagram.com
ASBD_ID = "129477"
#: (connect, read) seconds for every request.
DEFAULT_TIMEOUT = (10.0, 30.0)
DEFAULT_PAGE_SIZE = 12
STATE_SOURCE = "instagram"
OPTOUT_SOURCE = "instagram-optout"

_SHARED_DATA_RE = re.compile(r"window\._sharedData\s*=\s*(.+?);</script>", re.S)
_BUNDLE_RE = re.compile(r"(/static/bundles/(?:[\w-]+/)?en_US_Commons\.js/\w+\.js)")
_QUERY_ID_RES = (re.compile(r'byTagName\.get\(t\)\.pagination},queryId:"(\d+)",queryParams'),
                 re.compile(r'c="(\d+)",l="TAG_MEDIA_UPDATED"'))


# -- errors ---------------------------------------------------------------------------------
class InstagramError(SourceError):
    """Instagram answered in a way the collector cannot go on from. ``kind`` names it."""

    def __init__(self, message: str, kind: str = "instagram"):
        super().__init__(message)
        self.kind = kind


class LoginRequired(InstagramError):
    """Instagram wants a logged-in session (a redirect to /accounts/login/ or ``login_required``)."""


class CheckpointRequired(InstagramError):
    """Instagram put the account behind a checkpoint or challenge; a person must clear it in a browser."""


class RateLimited(InstagramError):
    """Instagram kept answering 429 or "please wait" after every retry."""


class QueryIdNotFound(InstagramError):
    """The legacy tag page's Commons bundle holds no hashtag ``query_id``."""


class BadDownload(IffseError):
    """An image download that will not get better by retrying (recorded against its post)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _Retry(Exception):
    def __init__(self, kind: str, message: str, wait: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.wait = wait


# -- cookies --------------------------------------------------------------------------------
class SessionCookies:
    """A logged-in session's cookies, exported from a browser. Treated as a secret.

    Read with :meth:`from_file` from a Netscape ``cookies.txt`` (tab-separated: domain, flag, path,
    secure, expiry, name, value; ``#HttpOnly_`` prefixes allowed) or a JSON export (a list of
    ``{"name", "value", "domain"}`` objects as written by browser extensions, or a plain
    ``{"name": "value"}`` object). Only instagram.com cookies are kept. The values are never
    shown: ``repr`` lists the cookie names only.
    """

    def __init__(self, values: Mapping[str, str]):
        self.__values = {str(k): str(v) for k, v in values.items() if v}
        if not self.__values.get("sessionid"):
            raise LoginRequired(
                "the cookies hold no `sessionid`: export them from a browser while logged in to "
                "instagram.com (Netscape cookies.txt or JSON) and pass that file", kind="login_required")

    @classmethod
    def from_file(cls, path: str | Path) -> "SessionCookies":
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise SourceError(f"cannot read the cookies file {path}: {exc.strerror}") from None
        values: dict[str, str] = {}
        stripped = text.lstrip()
        if stripped.startswith(("[", "{")):
            try:
                data = json.loads(stripped)
            except ValueError:
                raise SourceError(f"{path} is not valid JSON; export the cookies as JSON or Netscape cookies.txt") from None
            if isinstance(data, dict) and isinstance(data.get("cookies"), list):
                data = data["cookies"]
            if isinstance(data, dict):
                values = {str(k): str(v) for k, v in data.items() if isinstance(v, (str, int))}
            elif isinstance(data, list):
                for item in data:
                    if isinstance(item, dict) and "name" in item and "value" in item:
                        if "instagram.com" in str(item.get("domain", "instagram.com")):
                            values[str(item["name"])] = str(item["value"])
        else:
            for number, line in enumerate(text.splitlines(), start=1):
                if line.startswith("#HttpOnly_"):
                    line = line[len("#HttpOnly_"):]
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != 7:
                    raise SourceError(f"{path} line {number}: not a Netscape cookies.txt line (7 tab-separated "
                                      "fields expected); export the cookies again or use JSON")
                if "instagram.com" in fields[0]:
                    values[fields[5]] = fields[6]
        if not values:
            raise SourceError(f"{path} holds no instagram.com cookies; export them while logged in to instagram.com")
        return cls(values)

    @property
    def names(self) -> list[str]:
        return sorted(self.__values)

    def header(self) -> str:
        """The ``Cookie`` request header."""
        return "; ".join(f"{k}={v}" for k, v in self.__values.items())

    def get(self, name: str) -> str | None:
        return self.__values.get(name)

    def __repr__(self) -> str:
        return f"SessionCookies(names={self.names}, values hidden)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("SessionCookies are secret and are not pickled")


# -- posts ----------------------------------------------------------------------------------
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


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- the HTTP client ------------------------------------------------------------------------
class InstagramClient:
    """Talks to Instagram (or an imitation): one page at a time, images one by one.

    Settings are checked here; nothing is fetched until a method is called. ``image_host``
    (``scheme://host[:port]``) replaces the host of every image URL (tests point it at the
    imitation; ``None`` keeps Instagram's CDN). ``cookies`` are a :class:`SessionCookies`, a
    path to an exported cookies file, or None.
    """

    def __init__(self, api: str = "web", *, base_url: str = DEFAULT_BASE_URL, image_host: str | None = None,
                 cookies: SessionCookies | str | Path | None = None, user_agent: str | None = DEFAULT_USER_AGENT,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT, limiter: RateLimiter | None = None,
                 max_retries: int = 5, backoff: float = 2.0, backoff_max: float = 120.0,
                 soft_block_wait: float = 300.0, max_retry_after: float = 3600.0,
                 page_size: int = DEFAULT_PAGE_SIZE, query_id: str | None = None,
                 max_bytes: int = config.MAX_FILE_BYTES, rng: random.Random | None = None):
        if api not in API_GENERATIONS:
            raise ValueError(f"api must be one of {API_GENERATIONS}, not {api!r}")
        if max_retries < 0 or backoff < 0 or page_size < 1:
            raise ValueError("max_retries and backoff must be >= 0 and page_size >= 1")
        self.api = api
        self.base_url = base_url.rstrip("/")
        self.image_host = image_host.rstrip("/") if image_host else None
        if isinstance(cookies, Mapping):
            cookies = SessionCookies(cookies)
        elif cookies is not None and not isinstance(cookies, SessionCookies):
            cookies = SessionCookies.from_file(cookies)
        self.cookies: SessionCookies | None = cookies
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self.timeout = timeout
        self.limiter = limiter if limiter is not None else RateLimiter()
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.soft_block_wait = soft_block_wait
        self.max_retry_after = max_retry_after
        self.page_size = page_size
        self.query_id = query_id
        self.max_bytes = max_bytes
        self.rng = rng or random.Random()
        self.retries: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    def __repr__(self) -> str:
        return (f"InstagramClient(api={self.api!r}, base_url={self.base_url!r}, image_host={self.image_host!r}, "
                f"cookies={'given' if self.cookies else None})")

    # plumbing ---------------------------------------------------------------------------
    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = self._local.session = requests.Session()
            session.trust_env = False
        return session

    def _api_headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept-Language": "en-US,en;q=0.9",
                   "Referer": f"{self.base_url}/"}
        if self.api == "web":
            headers.update({"X-IG-App-ID": WEB_APP_ID, "X-ASBD-ID": ASBD_ID, "X-Requested-With": "XMLHttpRequest",
                            "Accept": "*/*"})
        if self.cookies is not None:
            headers["Cookie"] = self.cookies.header()
            if self.cookies.get("csrftoken"):
                headers["X-CSRFToken"] = self.cookies.get("csrftoken")
        return headers

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff * 2 ** attempt) * (0.5 + 0.5 * self.rng.random())

    def _fetch(self, endpoint: str, url: str, params: Mapping[str, Any] | None, *, image: bool,
               parse: Callable[[Any], Any]) -> Any:
        """GET with rate limiting and retries; ``parse(response)`` returns the result or raises _Retry."""
        import requests

        attempt = 0
        while True:
            self.limiter.wait(endpoint)
            try:
                headers = {"User-Agent": self.user_agent} if image else self._api_headers()
                with self._session().get(url, params=params, headers=headers, timeout=self.timeout,
                                         allow_redirects=image, stream=True) as resp:
                    self._check_status(resp, image)
                    return parse(resp)
            except _Retry as exc:
                kind, message, wait = exc.kind, str(exc), exc.wait
            except requests.Timeout:
                kind, message, wait = "timeout", f"no answer within {self.timeout} s", None
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
                kind, message, wait = "cut_short", "the connection closed before the whole body arrived", None
            except requests.ConnectionError as exc:
                kind, message, wait = "connection", f"connection failed ({type(exc).__name__})", None
            with self._lock:
                self.retries[kind] += 1
            if attempt >= self.max_retries:
                what = "image" if image else endpoint
                cls = RateLimited if kind in ("http_429", "please_wait") else InstagramError
                raise cls(f"{what} request to {urllib.parse.urlsplit(url).path} failed {attempt + 1} times, last: "
                          f"{message}. The crawl state is saved: run the same command again later.", kind=kind)
            if wait is None:
                wait = self._backoff(attempt)
            self.limiter.hold(endpoint, self.limiter.clock() + wait)
            attempt += 1

    def _check_status(self, resp, image: bool) -> None:
        status = resp.status_code
        if resp.is_redirect and not image:
            location = resp.headers.get("Location", "")
            if "/accounts/login" in location:
                raise LoginRequired(_login_message(self.cookies is not None), kind="login_required")
            if "/challenge" in location:
                raise CheckpointRequired(_checkpoint_message("challenge_required"), kind="checkpoint")
            raise InstagramError(f"unexpected redirect ({status}) to {urllib.parse.urlsplit(location).path}",
                                 kind=f"http_{status}")
        if status == 200:
            return
        body = _json_or_none(resp) if not image else None
        message = str((body or {}).get("message", "")) if isinstance(body, dict) else ""
        if status == 429:
            wait = _retry_after(resp.headers.get("Retry-After"), time.time())
            if wait is None:
                # instaloader: wait until the oldest request leaves the window, plus a margin.
                wait = max(self.limiter.until_window_frees(self._endpoint_of(resp)) + 6.0, self._backoff(0))
            if wait > self.max_retry_after:
                raise RateLimited(f"Instagram asks to wait {wait:.0f} s (Retry-After), more than max_retry_after="
                                  f"{self.max_retry_after:.0f} s. The crawl state is saved: run the same command "
                                  "again later.", kind="http_429")
            raise _Retry("http_429", f"429 Too Many Requests (wait {wait:.1f} s)", wait)
        if _is_checkpoint(message):
            raise CheckpointRequired(_checkpoint_message(message), kind="checkpoint")
        if message == "login_required":
            raise LoginRequired(_login_message(self.cookies is not None), kind="login_required")
        if status == 401 and "wait" in message.lower():
            raise _Retry("please_wait", f"401 {message}", self.soft_block_wait)
        if status >= 500 or status == 408:
            raise _Retry(f"http_{status}", f"HTTP {status}")
        if image:
            raise BadDownload(f"http_{status}", f"the image server answered HTTP {status}")
        if status == 404:
            raise InstagramError("Instagram answered 404: no such hashtag or page", kind="not_found")
        raise InstagramError(f"Instagram answered HTTP {status}: {message[:200] or 'no message'}", kind=f"http_{status}")

    def _endpoint_of(self, resp) -> str:
        path = urllib.parse.urlsplit(resp.url).path
        if path.startswith("/graphql/"):
            return "graphql"
        return "web" if self.api == "web" else "page"

    # API pages ----------------------------------------------------------------------------
    def get_json(self, endpoint: str, path: str, params: Mapping[str, Any] | None = None) -> dict:
        """A JSON answer with ``status: ok`` from ``base_url + path``."""
        def parse(resp):
            text = resp.text
            try:
                data = json.loads(text)
            except ValueError:
                if "/accounts/login" in text and "<html" in text.lower():
                    raise LoginRequired(_login_message(self.cookies is not None), kind="login_required") from None
                raise _Retry("not_json", "HTML where JSON was expected") from None
            if not isinstance(data, dict):
                raise _Retry("not_json", "JSON that is not an object")
            if data.get("status", "ok") != "ok":
                message = str(data.get("message", ""))
                if _is_checkpoint(message):
                    raise CheckpointRequired(_checkpoint_message(message), kind="checkpoint")
                if message == "login_required":
                    raise LoginRequired(_login_message(self.cookies is not None), kind="login_required")
                raise _Retry("status_fail", f'"status": "{data.get("status")}" ({message[:100]})')
            return data

        return self._fetch(endpoint, self.base_url + path, params, image=False, parse=parse)

    def get_text(self, endpoint: str, path: str, params: Mapping[str, Any] | None = None,
                 check: Callable[[str], Any] | None = None) -> Any:
        """A text answer from ``base_url + path``; ``check(text)`` may raise _Retry."""
        def parse(resp):
            text = resp.text
            return check(text) if check else text

        return self._fetch(endpoint, self.base_url + path, params, image=False, parse=parse)

    def fetch_page(self, tag: str, state: Mapping[str, Any]) -> tuple[list[Post], dict[str, Any]]:
        """One page of ``tag``'s posts after the crawl ``state``; returns (posts, the state after it).

        The state holds ``cursor`` (None before the first page), ``done`` and, for ``legacy``,
        ``query_id`` and ``bundle``.
        """
        state = dict(state)
        quoted = urllib.parse.quote(tag)
        if self.api == "web":
            if state.get("cursor") is None:
                data = self.get_json("web", "/api/v1/tags/web_info/", {"tag_name": tag})
            else:
                data = self.get_json("web", f"/explore/tags/{quoted}/",
                                     {"__a": 1, "__d": "dis", "max_id": state["cursor"]})
            feed = (data.get("data") or {}).get("recent")
            if not isinstance(feed, dict):
                raise InstagramError(f"no recent posts for #{tag} in Instagram's answer (no such hashtag?)",
                                     kind="not_found")
            posts = posts_from_feed(feed)
            state["cursor"] = feed.get("next_max_id")
            state["done"] = not feed.get("more_available") or not feed.get("next_max_id")
            return posts, state

        if state.get("cursor") is None:
            html, (posts, page_info) = self.get_text(
                "page", f"/explore/tags/{quoted}/",
                check=lambda text: (text, parse_tag_page(parse_shared_data(text))))
            bundle = _BUNDLE_RE.search(html)
            state["bundle"] = bundle.group(1) if bundle else None
        else:
            query_id = state.get("query_id") or self.query_id or self._find_query_id(tag, state)
            state["query_id"] = query_id
            data = self.get_json("graphql", "/graphql/query/", {"query_id": query_id, "tag_name": tag,
                                                                 "first": self.page_size, "after": state["cursor"]})
            hashtag = (data.get("data") or {}).get("hashtag")
            if not hashtag:
                raise InstagramError(f"no hashtag #{tag} in the GraphQL answer", kind="not_found")
            media = hashtag["edge_hashtag_to_media"]
            posts = [p for p in (post_from_node(e["node"]) for e in media.get("edges") or []) if p]
            page_info = media.get("page_info") or {}
        state["cursor"] = page_info.get("end_cursor")
        state["done"] = not page_info.get("has_next_page") or not page_info.get("end_cursor")
        return posts, state

    def _find_query_id(self, tag: str, state: dict) -> str:
        bundle = state.get("bundle")
        if not bundle:
            html = self.get_text("page", f"/explore/tags/{urllib.parse.quote(tag)}/")
            m = _BUNDLE_RE.search(html)
            bundle = state["bundle"] = m.group(1) if m else None
        js = self.get_text("page", bundle) if bundle else ""
        query_id = find_query_id(js)
        if query_id is None:
            raise QueryIdNotFound(
                f"the tag page's Commons bundle ({bundle or 'none referenced'}) holds no hashtag query_id, so the "
                "legacy API cannot page further. Pass the id with --query-id (query_id= in Python), e.g. "
                "17875800862117404 (2017), or use --api web.", kind="no_query_id")
        return query_id

    # images -------------------------------------------------------------------------------
    def image_url(self, url: str) -> str:
        """``url`` with its scheme and host replaced by ``image_host`` (when set)."""
        if not self.image_host:
            return url
        parts = urllib.parse.urlsplit(url)
        return self.image_host + urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))

    def download(self, url: str) -> tuple[bytes, int, int]:
        """Download and check one image: (bytes, width, height), or raise BadDownload / InstagramError."""
        limit = self.max_bytes

        def parse(resp):
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype and not (ctype.startswith("image/") or ctype in ("application/octet-stream", "binary/octet-stream")):
                raise BadDownload("not_image", f"the image URL answered {ctype}, not an image")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise BadDownload("too_large", f"{int(declared):,} bytes is over the {limit:,}-byte limit")
            chunks, size = [], 0
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise BadDownload("too_large", f"more than {limit:,} bytes (the limit)")
                chunks.append(chunk)
            return b"".join(chunks)

        data = self._fetch("image", self.image_url(url), None, image=True, parse=parse)
        try:
            im = images.open_image(data)
        except BadImage as exc:
            raise BadDownload(exc.kind, str(exc).replace("image: ", "", 1)) from None
        return data, im.width, im.height


def _json_or_none(resp):
    try:
        return json.loads(resp.text)
    except ValueError:
        return None


def _is_checkpoint(message: str) -> bool:
    return message in ("checkpoint_required", "challenge_required", "feedback_required")


def _checkpoint_message(what: str) -> str:
    return (f"Instagram answered {what}: it wants the account holder to confirm the login in a browser or the "
            "app. The crawl stopped (its state is saved). Clear the checkpoint at instagram.com, export fresh "
            "cookies, wait a while, then run the same command again.")


# -- opt-out --------------------------------------------------------------------------------
def load_opt_out(path: str | Path | None) -> set[str]:
    """Usernames, owner ids and shortcodes from an opt-out file: one a line, ``#`` comments, ``@`` optional."""
    if path is None:
        return set()
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SourceError(f"cannot read the opt-out list {path}: {exc.strerror}") from None
    return {line.split("#", 1)[0].strip().lstrip("@").lower() for line in lines} - {""}


def forgotten_names(catalog) -> set[str]:
    """Owners and shortcodes removed with :func:`forget`; the collector skips them from then on."""
    return {r[0].lower() for r in catalog.query("SELECT key FROM crawl_state WHERE source=?", (OPTOUT_SOURCE,))}


def _opted_out(post: Post, names: set[str]) -> bool:
    return any(v is not None and v.lower() in names for v in (post.username, post.owner_id, post.shortcode))


def forget(catalog, *, owner: str | None = None, photo: str | int | None = None) -> int:
    """Remove an owner's photos (``owner``: username or owner id) or one photo, with their faces and vectors.

    ``photo`` is a catalogue photo id or an Instagram shortcode (all images of that post). The
    files are deleted, the index is marked for rebuild (``iffse index`` rebuilds it), and an owner
    or shortcode is remembered so later Instagram crawls skip their posts. Returns how many
    photos were removed.
    """
    if (owner is None) == (photo is None):
        raise ValueError("give exactly one of owner= or photo=")
    if owner is not None:
        name = owner.strip().lstrip("@")
        ids = [r[0] for r in catalog.query(
            "SELECT id FROM photos WHERE lower(json_extract(meta, '$.username')) = lower(?) "
            "OR json_extract(meta, '$.owner_id') = ?", (name, name))]
        key = name.lower()
    else:
        text = str(photo).strip()
        if text.isdigit() and catalog.scalar("SELECT 1 FROM photos WHERE id=?", (int(text),)):
            ids, key = [int(text)], None
        else:
            ids = [r[0] for r in catalog.query(
                "SELECT id FROM photos WHERE json_extract(meta, '$.shortcode') = ?", (text,))]
            key = text.lower() if ids or not text.isdigit() else None
        if not ids and key is None:
            raise IffseError(f"no photo {text} in {catalog.root}")
    if key is not None:
        catalog.set_state(OPTOUT_SOURCE, key, {"forgotten_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                               "photos": len(ids)})
    return catalog.remove_photos(ids)


# -- the crawl ------------------------------------------------------------------------------
def state_key(api: str, tag: str) -> str:
    return f"{api}:{tag.lower()}"


def collect_hashtag(catalog, tags: str | Iterable[str], *, api: str = "web", base_url: str = DEFAULT_BASE_URL,
                    image_host: str | None = None, cookies: SessionCookies | str | Path | None = None,
                    max_posts: int | None = None, workers: int = 8, restart: bool = False,
                    opt_out: str | Path | Iterable[str] | None = None, progress: bool = True,
                    client: InstagramClient | None = None, **client_options) -> dict[str, Any]:
    """Collect the photos of one or more hashtags into ``catalog``; returns counts.

    Parameters
    ----------
    catalog : Catalog
        Where the photos go (``kind="instagram"``, ``source_id="<shortcode>/<n>"``, metadata in
        ``photos.meta``: shortcode, media_id, owner_id, username, taken_at, caption, hashtag,
        media_type, image_number, image_url, fetched_at, api).
    tags : str or list of str
        Hashtags without ``#``.
    api : "web" or "legacy"
        Today's web API (needs ``cookies``) or IFFSE's 2017 flow (see the module docstring).
    base_url, image_host : str
        Instagram's address and a replacement host for image URLs; point both at
        :func:`~iffse_lib.sources.fake_instagram.serve` to work offline.
    cookies : path, SessionCookies or mapping
        A logged-in browser session's cookies (a Netscape cookies.txt or JSON export, or
        ``{name: value}``); never stored. With the imitation, ``fake_instagram.FAKE_COOKIES``.
    max_posts : int
        Stop after this many posts of each tag's feed, counted over resumed runs.
    workers : int
        Images downloaded at once (pages are fetched one after the other).
    restart : bool
        Forget the saved crawl state and walk each feed from its newest post again (photos
        already in the catalogue are still not downloaded again).
    opt_out : path or iterable of str
        Usernames, owner ids or shortcodes whose posts are skipped before download. Owners and
        posts removed with :func:`forget` are always skipped.
    client : InstagramClient
        A ready client; otherwise one is made from ``api``, ``base_url``, ``image_host``,
        ``cookies`` and ``client_options`` (``limiter``, ``timeout``, ``user_agent``,
        ``max_retries``, ``backoff``, ``soft_block_wait``, ``page_size``, ``query_id`` …).

    The crawl state (cursor, pages, posts) is saved in the catalogue after each page, so the
    same call again goes on where it stopped. Bad downloads are recorded with
    ``catalog.reject_source`` (see ``catalog.errors()``) and the crawl goes on; downloads that
    kept failing are recorded as errors and tried again by the next run. Raises
    :class:`LoginRequired`, :class:`CheckpointRequired`, :class:`RateLimited`,
    :class:`QueryIdNotFound` or :class:`InstagramError` when the crawl cannot go on.
    """
    from tqdm.auto import tqdm

    if isinstance(tags, str):
        tags = [tags]
    tags = [t.strip().lstrip("#") for t in tags if t.strip().lstrip("#")]
    if not tags:
        raise ValueError("give at least one hashtag")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if max_posts is not None and max_posts < 0:
        raise ValueError("max_posts must be >= 0")
    if client is None:
        client = InstagramClient(api, base_url=base_url, image_host=image_host, cookies=cookies, **client_options)
    if isinstance(opt_out, (str, Path)):
        names = load_opt_out(opt_out)
    else:
        names = {str(n).strip().lstrip("@").lower() for n in opt_out or ()}
    names |= forgotten_names(catalog)
    seen = catalog.seen_sources(KIND)
    totals: Counter[str] = Counter(dict.fromkeys(("posts", "stored", "duplicates", "known", "opted_out"), 0))
    errors: Counter[str] = Counter()
    per_tag: dict[str, dict] = {}
    t0 = time.perf_counter()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="iffse-download")
    try:
        for tag in tags:
            key = state_key(client.api, tag)
            if restart:
                catalog.set_state(STATE_SOURCE, key, None)
            state = catalog.get_state(STATE_SOURCE, key) or {
                "tag": tag, "api": client.api, "cursor": None, "pages": 0, "posts": 0, "done": False}
            counts: Counter[str] = Counter(dict.fromkeys(("posts", "stored", "duplicates", "known", "opted_out"), 0))
            bar = tqdm(total=max_posts, initial=state["posts"] if max_posts is None else min(state["posts"], max_posts), desc=f"#{tag}",
                       unit="post", disable=not progress)
            try:
                while not state["done"] and (max_posts is None or state["posts"] < max_posts):
                    posts, after = client.fetch_page(tag, state)
                    take = posts if max_posts is None else posts[:max_posts - state["posts"]]
                    _store_page(catalog, client, pool, take, tag, seen, names, counts, errors, bar, t0)
                    if len(take) < len(posts):
                        break  # stopped inside this page: the next run fetches it again
                    state = {**after, "pages": state["pages"] + 1, "posts": state["posts"] + len(posts)}
                    catalog.set_state(STATE_SOURCE, key, state)
            finally:
                bar.close()
            counts["pages"] = state["pages"]
            per_tag[tag] = {**counts, "complete": bool(state["done"]), "posts_total": state["posts"]}
            totals.update({k: v for k, v in counts.items() if k != "pages"})
            totals["pages"] += counts["pages"]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return {**totals, "errors": dict(errors), "retries": dict(client.retries), "tags": per_tag,
            "seconds": round(time.perf_counter() - t0, 3)}


def _store_page(catalog, client: InstagramClient, pool, posts: list[Post], tag: str, seen: set[str],
                names: set[str], counts: Counter, errors: Counter, bar, t0: float) -> None:
    """Download a page's new images concurrently and store them in page order."""
    jobs = []
    for post in posts:
        if _opted_out(post, names):
            counts["opted_out"] += 1
            continue
        for n, url in enumerate(post.image_urls):
            if f"{post.shortcode}/{n}" in seen:
                counts["known"] += 1
                continue
            jobs.append((post, n, pool.submit(client.download, url)))
    fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    done_posts: dict[str, int] = Counter(p.shortcode for p, _, _ in jobs)
    finished = 0
    for post, n, future in jobs:
        record = PhotoRecord(kind=KIND, source_id=f"{post.shortcode}/{n}", meta=post.meta(n, tag, client.api, fetched_at))
        try:
            data, width, height = future.result()
        except BadDownload as exc:
            catalog.reject_source(record, "collect", exc.kind, f"{record.source_id}: {exc}")
            errors[exc.kind] += 1
        except InstagramError as exc:
            # Kept failing (network, 5xx, 429): recorded, and the next run tries again.
            catalog.record_error("collect", exc.kind, f"{record.source_id}: {exc}", source_kind=KIND,
                                 source_id=record.source_id)
            errors[exc.kind] += 1
        else:
            _, created = catalog.store_photo(record, data, width, height, images.guess_extension(data))
            counts["stored" if created else "duplicates"] += 1
            seen.add(record.source_id)
        done_posts[post.shortcode] -= 1
        if done_posts[post.shortcode] == 0:
            finished += 1
            bar.update(1)
            _postfix(bar, counts, errors, t0)
    counts["posts"] += len(posts)
    bar.update(len(posts) - finished)
    _postfix(bar, counts, errors, t0)


def _postfix(bar, counts: Counter, errors: Counter, t0: float) -> None:
    if bar.disable:
        return
    rate = counts["stored"] / max(time.perf_counter() - t0, 1e-9)
    postfix = {"photos": counts["stored"], "photos/s": f"{rate:.1f}"}
    if errors:
        postfix["errors"] = ",".join(f"{k}:{v}" for k, v in sorted(errors.items()))
    bar.set_postfix(postfix, refresh=False)
