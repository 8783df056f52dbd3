"""The HTTP client: rate-limited, retried requests to Instagram (or the imitation) and safe image downloads."""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ... import config, images
from ...errors import (BadDownload, BadImage, BadPost, CheckpointRequired, IffseError, InstagramError, LoginRequired,
                       QueryIdNotFound, RateLimited, RetryableAnswer)
from ..ratelimit import RETRY_MARGIN, RateLimiter
from .cookies import SessionCookies, scrub
from .posts import (_BUNDLE_RE, Post, _login_message, find_query_id, parse_feed, parse_shared_data,
                    parse_tag_page, post_from_media, post_from_node, url_expiry)

log = logging.getLogger(__name__)

API_GENERATIONS = ("legacy", "web")
TABS = ("recent", "top", "both")
DEFAULT_BASE_URL = "https://www.instagram.com"
#: A current desktop browser's User-Agent (the web API expects a browser).
DEFAULT_USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/131.0.0.0 Safari/537.36")
WEB_APP_ID = "936619743392459"  # instagrapi PUBLIC_WEB_APP_ID, sent by www.instagram.com
ASBD_ID = "129477"
#: (connect, read) seconds for every request.
DEFAULT_TIMEOUT = (10.0, 30.0)
#: Posts per legacy GraphQL page: IFFSE asked for ``first=6``.
DEFAULT_PAGE_SIZE = 6
#: Image hosts allowed by default (and their subdomains): Instagram's and Facebook's CDNs.
DEFAULT_IMAGE_HOSTS = ("cdninstagram.com", "fbcdn.net")
#: The most bytes read from one API answer (streamed; a longer answer is refused).
MAX_API_BYTES = 20 * 1024 * 1024
#: An image listed longer ago than this may have an expired signature (403/410): refreshed once.
URL_FRESH_SECONDS = 300.0
MAX_REDIRECTS = 5


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when it is absent or makes no sense
    (negative, zero, in the past, NaN, infinite): the caller then waits for the rate window instead."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def _json_or_none(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _is_checkpoint(message: str) -> bool:
    return message in ("checkpoint_required", "challenge_required", "feedback_required")


def _checkpoint_message(what: str) -> str:
    return (f"Instagram answered {what}: it wants the account holder to confirm the login in a browser or the "
            "app. The crawl stopped (its state is saved). Clear the checkpoint at instagram.com, export fresh "
            "cookies, wait a while, then run the same command again.")


def _host_of(text: str) -> str:
    return (urllib.parse.urlsplit(text).netloc if "://" in text else text).strip().lower().rstrip("/")


# -- the HTTP client ------------------------------------------------------------------------
class InstagramClient:
    """Talks to Instagram (or an imitation): one page at a time, images one by one.

    Settings are checked here; nothing is fetched until a method is called. Images are fetched
    only from allowed hosts: :data:`DEFAULT_IMAGE_HOSTS` and their subdomains, the ``base_url``
    host (with its port) and ``image_hosts`` (``cdn.example.org`` allows its subdomains too,
    ``host:port`` that exact address; ``image_host=`` is one more). ``cookies`` are a
    :class:`SessionCookies`, a ``{name: value}`` mapping, a path to an exported cookies file, or
    None. ``tab`` is the web feed: ``recent`` (falling back to ``top`` when Instagram shows only
    top posts) or ``top``.
    """

    def __init__(self, api: str = "web", *, base_url: str = DEFAULT_BASE_URL, image_hosts: Iterable[str] = (),
                 image_host: str | None = None, cookies: SessionCookies | Mapping | str | Path | None = None,
                 user_agent: str | None = DEFAULT_USER_AGENT, timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
                 limiter: RateLimiter | None = None, max_retries: int = 5, backoff: float = 2.0,
                 backoff_max: float = 120.0, soft_block_wait: float = 300.0, max_retry_after: float = 3600.0,
                 page_size: int = DEFAULT_PAGE_SIZE, query_id: str | None = None,
                 max_bytes: int = config.MAX_FILE_BYTES, max_api_bytes: int = MAX_API_BYTES,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time):
        if api not in API_GENERATIONS:
            raise ValueError(f"api must be one of {API_GENERATIONS}, not {api!r}")
        if max_retries < 0 or backoff < 0 or page_size < 1 or max_api_bytes < 1:
            raise ValueError("max_retries and backoff must be >= 0, page_size and max_api_bytes >= 1")
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.api = api
        self.base_url = base_url.rstrip("/")
        hosts = [_host_of(h) for h in [*image_hosts, *([image_host] if image_host else [])]]
        self.image_domains = tuple(DEFAULT_IMAGE_HOSTS) + tuple(h for h in hosts if ":" not in h)
        self.image_netlocs = (parts.netloc.lower(),) + tuple(h for h in hosts if ":" in h)
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
        self.max_api_bytes = max_api_bytes
        self.rng = rng or random.Random()
        self.clock = clock
        self.retries: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()
        # Web API requests to i.instagram.com count against the app's window (instaloader's "iphone").
        self.api_endpoint = "iphone" if parts.hostname.startswith("i.instagram.") else "web"

    def __repr__(self) -> str:
        return f"InstagramClient(api={self.api!r}, base_url={self.base_url!r}, cookies={'given' if self.cookies else None})"

    def scrub(self, text: str) -> str:
        """``text`` without any cookie value of this session."""
        return scrub(text, self.cookies)

    # plumbing ---------------------------------------------------------------------------
    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            import http.cookiejar

            import requests

            session = self._local.session = requests.Session()
            session.trust_env = False
            # Cookies live in self.cookies only: requests' own jar takes and sends none, so no
            # cookie can follow a redirect or reach an image host.
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        return session

    def _api_headers(self, method: str) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept-Language": "en-US,en;q=0.9",
                   "Referer": f"{self.base_url}/"}
        if self.api == "web":
            headers.update({"X-IG-App-ID": WEB_APP_ID, "X-ASBD-ID": ASBD_ID, "X-Requested-With": "XMLHttpRequest",
                            "Accept": "*/*"})
        if self.cookies is not None:
            headers["Cookie"] = self.cookies.header()
            csrf = self.cookies.get("csrftoken")
            if csrf:
                headers["X-CSRFToken"] = csrf
        return headers

    def backoff_delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (0, 1, …): exponential, capped, with jitter."""
        return min(self.backoff_max, self.backoff * 2 ** attempt) * (0.5 + 0.5 * self.rng.random())

    def pause(self, endpoint: str, seconds: float, reason: str) -> None:
        """Let no request to ``endpoint`` start for ``seconds``; logged with its reason."""
        log.info("waiting %.1f s before the next %s request: %s", seconds, endpoint, reason)
        self.limiter.hold(endpoint, self.limiter.clock() + seconds)

    def _read_capped(self, resp, limit: int, too_large: Callable[[str], Exception]) -> bytes:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large(f"{int(declared):,} bytes is over the {limit:,}-byte limit")
        chunks, size = [], 0
        for chunk in resp.iter_content(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise too_large(f"more than {limit:,} bytes (the limit)")
            chunks.append(chunk)
        return b"".join(chunks)

    def _text(self, resp) -> str:
        data = self._read_capped(resp, self.max_api_bytes, lambda m: InstagramError(
            f"Instagram's answer to {urllib.parse.urlsplit(resp.url).path} is too large: {m}", kind="too_large"))
        return data.decode(resp.encoding or "utf-8", errors="replace")

    def _fetch(self, endpoint: str, url: str, params: Mapping[str, Any] | None, *, image: bool,
               parse: Callable[[Any], Any], data: Mapping[str, Any] | None = None) -> Any:
        """GET (or POST ``data``) with rate limiting and retries; ``parse(response)`` returns the
        result or raises RetryableAnswer. Images follow redirects to allowed hosts only."""
        import requests

        attempt = 0
        hops = 0
        while True:
            waited = self.limiter.wait(endpoint)
            if waited >= 1.0:
                log.info("waited %.1f s for the %s rate window", waited, endpoint)
            elif waited > 0:
                log.debug("waited %.2f s before a %s request", waited, endpoint)
            method = "POST" if data is not None else "GET"
            with self._lock:
                self.requests[endpoint] += 1
            try:
                headers = {"User-Agent": self.user_agent} if image else self._api_headers(method)
                with self._session().request(method, url, params=params, data=data, headers=headers,
                                             timeout=self.timeout, allow_redirects=False, stream=True) as resp:
                    if not image and self.cookies is not None:
                        changed = self.cookies.update_from(resp.raw.headers.getlist("Set-Cookie")
                                                           if hasattr(resp.raw.headers, "getlist") else [])
                        if changed:
                            log.debug("Instagram refreshed the cookies %s (kept in memory only)", ", ".join(changed))
                    if image and resp.is_redirect:
                        location = urllib.parse.urljoin(url, resp.headers.get("Location", ""))
                        hops += 1
                        if hops > MAX_REDIRECTS:
                            raise BadDownload(f"more than {MAX_REDIRECTS} redirects", kind="redirects")
                        self.check_image_url(location, redirect=True)
                        url, params = location, None
                        continue
                    self._check_status(resp, image, endpoint, attempt)
                    return parse(resp)
            except RetryableAnswer as exc:
                kind, message, wait = exc.kind, self.scrub(str(exc)), exc.wait
            except requests.Timeout:
                kind, message, wait = "timeout", f"no answer within {self.timeout} s", None
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
                kind, message, wait = "cut_short", "the connection closed before the whole body arrived", None
            except requests.ConnectionError as exc:
                kind, message, wait = "connection", f"connection failed ({type(exc).__name__})", None
            except IffseError as exc:
                exc.args = (self.scrub(str(exc)),)
                raise
            with self._lock:
                self.retries[kind] += 1
            path = urllib.parse.urlsplit(url).path
            if attempt >= self.max_retries:
                what = "image" if image else endpoint
                cls = RateLimited if kind in ("http_429", "please_wait") else InstagramError
                log.warning("%s request to %s failed %d times (last: %s); giving up", what, path, attempt + 1, message)
                raise cls(f"{what} request to {path} failed {attempt + 1} times, last: {message}. The crawl state "
                          "is saved: run the same command again later.", kind=kind)
            if wait is None:
                wait = self.backoff_delay(attempt)
                reason = f"backoff after {message} from {path}"
            else:
                reason = f"{message} from {path}"
            log.warning("retry %d/%d of %s in %.1f s: %s", attempt + 1, self.max_retries, path, wait, message)
            self.pause(endpoint, wait, reason)
            attempt += 1

    def _check_status(self, resp, image: bool, endpoint: str, attempt: int) -> None:
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
        body = _json_or_none(self._text(resp)) if not image else None
        body = body if isinstance(body, dict) else {}
        message = self.scrub(str(body.get("message", "")))
        if status == 429:
            wait = _retry_after(resp.headers.get("Retry-After"), time.time())
            if wait is None:
                # instaloader: wait until the oldest request leaves the window, plus a margin.
                margin = RETRY_MARGIN.get(endpoint, RETRY_MARGIN["default"])
                wait = max(self.limiter.until_window_frees(endpoint) + margin, self.backoff_delay(attempt))
            if wait > self.max_retry_after:
                raise RateLimited(f"Instagram asks to wait {wait:.0f} s (Retry-After), more than max_retry_after="
                                  f"{self.max_retry_after:.0f} s. The crawl state is saved: run the same command "
                                  "again later.", kind="http_429")
            raise RetryableAnswer(f"429 Too Many Requests (wait {wait:.1f} s)", kind="http_429", wait=wait)
        if _is_checkpoint(message):
            raise CheckpointRequired(_checkpoint_message(message), kind="checkpoint")
        if message == "login_required":
            raise LoginRequired(_login_message(self.cookies is not None), kind="login_required")
        if status == 401 and body.get("require_login") is True:
            # "Please wait a few minutes" with require_login: the session is not accepted any more.
            said = f' "{message[:80]}"' if message else ""
            raise LoginRequired(f"Instagram answered 401{said} with require_login: "
                                + _login_message(self.cookies is not None), kind="login_required")
        if status == 401 and "wait" in message.lower():
            raise RetryableAnswer(f"401 {message}", kind="please_wait", wait=self.soft_block_wait)
        if status >= 500 or status == 408:
            raise RetryableAnswer(f"HTTP {status}", kind=f"http_{status}")
        if image:
            raise BadDownload(f"the image server answered HTTP {status}", kind=f"http_{status}")
        if status == 404:
            raise InstagramError("Instagram answered 404: no such hashtag or page", kind="not_found")
        raise InstagramError(f"Instagram answered HTTP {status}: {message[:200] or 'no message'}", kind=f"http_{status}")

    # API pages ----------------------------------------------------------------------------
    def get_json(self, endpoint: str, path: str, params: Mapping[str, Any] | None = None,
                 data: Mapping[str, Any] | None = None) -> dict:
        """A JSON answer with ``status: ok`` from ``base_url + path`` (a POST when ``data`` is given)."""
        def parse(resp):
            text = self._text(resp)
            try:
                body = json.loads(text)
            except ValueError:
                if "/accounts/login" in text and "<html" in text.lower():
                    raise LoginRequired(_login_message(self.cookies is not None), kind="login_required") from None
                raise RetryableAnswer("HTML where JSON was expected", kind="not_json") from None
            if not isinstance(body, dict):
                raise RetryableAnswer("JSON that is not an object", kind="not_json")
            if body.get("status", "ok") != "ok":
                message = self.scrub(str(body.get("message", "")))
                if _is_checkpoint(message):
                    raise CheckpointRequired(_checkpoint_message(message), kind="checkpoint")
                if message == "login_required":
                    raise LoginRequired(_login_message(self.cookies is not None), kind="login_required")
                raise RetryableAnswer(f'"status": "{self.scrub(str(body.get("status")))[:20]}" ({message[:100]})',
                                      kind="status_fail")
            return body

        return self._fetch(endpoint, self.base_url + path, params, image=False, parse=parse, data=data)

    def get_text(self, endpoint: str, path: str, params: Mapping[str, Any] | None = None,
                 check: Callable[[str], Any] | None = None) -> Any:
        """A text answer from ``base_url + path``; ``check(text)`` may raise RetryableAnswer."""
        def parse(resp):
            text = self._text(resp)
            return check(text) if check else text

        return self._fetch(endpoint, self.base_url + path, params, image=False, parse=parse)

    def fetch_page(self, tag: str, state: Mapping[str, Any]) -> tuple[list[Post], dict[str, Any], list[BadPost]]:
        """One page of ``tag``'s posts after the crawl ``state``: (posts, the state after it, bad posts).

        The state holds ``cursor`` (None before the first page) and ``done``; for ``web`` also
        ``tab``, ``page`` and ``media_ids``; for ``legacy`` ``query_id``, ``bundle`` and ``shape``.
        """
        state = dict(state)
        if self.api == "web":
            return self._fetch_web(tag, state)
        return self._fetch_legacy(tag, state)

    def _fetch_web(self, tag: str, state: dict) -> tuple[list[Post], dict, list[BadPost]]:
        tab = state.get("tab") or "recent"
        if state.get("cursor") is None:
            data = self.get_json(self.api_endpoint, "/api/v1/tags/web_info/", {"tag_name": tag}).get("data")
            if not isinstance(data, Mapping):
                raise InstagramError(f"no posts for #{tag} in Instagram's answer (no such hashtag?)", kind="not_found")
            feed = data.get(tab)
            empty = not isinstance(feed, Mapping) or (not feed.get("sections") and not feed.get("more_available"))
            if tab == "recent" and empty and state.get("fallback", True) and isinstance(data.get("top"), Mapping):
                log.info("#%s: Instagram shows no recent posts, only top posts; crawling the top tab", tag)
                tab, feed = "top", data["top"]
            if not isinstance(feed, Mapping):
                log.info("#%s: Instagram's answer has no %s tab", tag, tab)
                return [], {**state, "tab": tab, "cursor": None, "done": True}, []
        else:
            form = {"tab": tab, "max_id": state["cursor"], "page": state.get("page") or 1,
                    "next_media_ids": json.dumps(state.get("media_ids") or []), "include_persistent": "false",
                    "surface": "grid"}
            feed = self.get_json(self.api_endpoint, f"/api/v1/tags/{urllib.parse.quote(tag)}/sections/", data=form)
        page = parse_feed(feed, tab)
        state.update(tab=tab, cursor=page.next_max_id, page=page.next_page, media_ids=page.next_media_ids,
                     done=not page.more_available)
        return page.posts, state, page.bad

    def _fetch_legacy(self, tag: str, state: dict) -> tuple[list[Post], dict, list[BadPost]]:
        quoted = urllib.parse.quote(tag)
        if state.get("cursor") is None:
            html, (posts, page_info) = self.get_text(
                "page", f"/explore/tags/{quoted}/",
                check=lambda text: (text, parse_tag_page(parse_shared_data(text))))
            bundle = _BUNDLE_RE.search(html)
            state["bundle"] = bundle.group(1) if bundle else None
            state["shape"] = page_info.get("shape")
        else:
            query_id = state.get("query_id") or self.query_id or self._find_query_id(tag, state)
            state["query_id"] = query_id
            if state.get("shape") == "graphql":  # late 2017: variables as JSON
                params = {"query_id": query_id,
                          "variables": json.dumps({"tag_name": tag, "first": self.page_size, "after": state["cursor"]},
                                                  separators=(",", ":"))}
            else:  # early 2017, as IFFSE sent it
                params = {"query_id": query_id, "tag_name": tag, "first": self.page_size, "after": state["cursor"]}
            try:
                data = self.get_json("graphql", "/graphql/query/", params)
            except (LoginRequired, CheckpointRequired, RateLimited, QueryIdNotFound):
                raise
            except InstagramError as exc:
                if state.get("reseeded"):
                    raise
                log.warning("#%s: the GraphQL query failed (%s); seeding again from a fresh tag page (a new "
                            "query_id and cursor), as IFFSE did", tag, exc)
                fresh = {**state, "cursor": None, "query_id": None, "bundle": None}
                posts, after, bad = self._fetch_legacy(tag, fresh)
                return posts, {**after, "reseeded": True}, bad
            hashtag = (data.get("data") or {}).get("hashtag")
            if not hashtag:
                raise InstagramError(f"no hashtag #{tag} in the GraphQL answer", kind="not_found")
            media = hashtag["edge_hashtag_to_media"]
            posts, bad = [], []
            for edge in media.get("edges") or []:
                try:
                    post = post_from_node(edge.get("node") if isinstance(edge, Mapping) else edge)
                except BadPost as exc:
                    bad.append(exc)
                    continue
                if post:
                    posts.append(post)
            page_info = media.get("page_info") or {}
            state["reseeded"] = False
            state["cursor"] = page_info.get("end_cursor")
            state["done"] = not page_info.get("has_next_page") or not page_info.get("end_cursor")
            return posts, state, bad
        state["cursor"] = page_info.get("end_cursor")
        state["done"] = not page_info.get("has_next_page") or not page_info.get("end_cursor")
        return posts, state, []

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

    def media_info(self, pk: str, tab: str | None = None) -> Post | None:
        """A post as ``GET /api/v1/media/<pk>/info/`` gives it now (``items[0]``), with fresh image URLs."""
        data = self.get_json(self.api_endpoint, f"/api/v1/media/{urllib.parse.quote(str(pk))}/info/")
        items = data.get("items")
        if not isinstance(items, list) or not items:
            return None
        return post_from_media(items[0], tab)

    # images -------------------------------------------------------------------------------
    def check_image_url(self, url: str, redirect: bool = False) -> None:
        """Raise BadDownload unless ``url`` is http(s) on an allowed image host."""
        what = "a redirect to" if redirect else "an image URL on"
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise BadDownload("refused an image URL that does not parse", kind="bad_url") from None
        if parts.scheme not in ("http", "https"):
            raise BadDownload(f"refused {what} the {parts.scheme or 'empty'} scheme (only http and https)",
                              kind="bad_url")
        host = (parts.hostname or "").lower()
        netloc = f"{host}:{port}" if port else host
        if any(host == d or host.endswith("." + d) for d in self.image_domains) or netloc in self.image_netlocs:
            return
        raise BadDownload(f"refused {what} {netloc or 'no host'}: not an allowed image host "
                          "(add it with --image-host if you trust it)", kind="bad_host")

    def _download_once(self, url: str) -> tuple[bytes, int, int]:
        self.check_image_url(url)
        limit = self.max_bytes

        def parse(resp):
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype and not (ctype.startswith("image/") or ctype in ("application/octet-stream", "binary/octet-stream")):
                raise BadDownload(f"the image URL answered {ctype}, not an image", kind="not_image")
            return self._read_capped(resp, limit, lambda m: BadDownload(m, kind="too_large"))

        data = self._fetch("image", url, None, image=True, parse=parse)
        try:
            im = images.open_image(data)
        except BadImage as exc:
            raise BadDownload(str(exc).replace("image: ", "", 1), kind=exc.kind) from None
        return data, im.width, im.height

    def download(self, url: str, *, pk: str | None = None, n: int = 0,
                 listed_at: float | None = None) -> tuple[bytes, int, int]:
        """Download and check one image: (bytes, width, height), or raise BadDownload / InstagramError.

        A 403 or 410 on a signed URL whose ``oe`` expiry has passed, or that was listed more than
        :data:`URL_FRESH_SECONDS` ago, is refreshed once from ``/api/v1/media/<pk>/info/`` (web
        API); if that fails too the BadDownload is ``retryable``.
        """
        try:
            return self._download_once(url)
        except BadDownload as exc:
            if exc.kind not in ("http_403", "http_410") or pk is None or self.api != "web":
                raise
            now = self.clock()
            expires = url_expiry(url)
            if not ((expires is not None and expires <= now)
                    or (listed_at is not None and now - listed_at > URL_FRESH_SECONDS)):
                raise
            log.info("image %d of post %s answered %s and its signature has expired; asking for a fresh URL",
                     n, pk, exc.kind.replace("http_", "HTTP "))
        try:
            fresh = self.media_info(pk)
        except BadPost as exc:
            raise BadDownload(f"the signed URL expired and the fresh post is odd: {exc}", kind="url_expired",
                              retryable=True) from None
        if fresh is None or n >= len(fresh.image_urls):
            raise BadDownload("the signed URL expired and Instagram gave no fresh one", kind="url_expired",
                              retryable=True)
        try:
            return self._download_once(fresh.image_urls[n])
        except BadDownload as exc:
            if exc.kind in ("http_403", "http_410"):
                raise BadDownload(f"the refreshed URL was refused too ({exc}); a later run tries again",
                                  kind="url_expired", retryable=True) from None
            raise
