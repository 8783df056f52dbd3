"""The HTTP client: rate-limited, retried requests to Instagram (or the imitation) and image downloads."""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping

from ... import config, images
from ...errors import BadDownload, BadImage, CheckpointRequired, InstagramError, LoginRequired, QueryIdNotFound, RateLimited
from ..ratelimit import RateLimiter
from .cookies import SessionCookies
from .posts import (_BUNDLE_RE, Post, _login_message, _Retry, find_query_id, parse_shared_data, parse_tag_page,
                    post_from_node, posts_from_feed)

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

