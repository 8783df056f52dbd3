"""A local imitation of Instagram's hashtag pages, for tests and offline notebooks.

It serves, on 127.0.0.1, both API generations that :mod:`iffse_lib.sources.instagram` speaks, with
the shapes of the recorded responses in ``../shared/instagram`` (see its README), and fails the
way the real server does:

* ``legacy`` (2017): ``GET /explore/tags/<tag>/`` HTML with ``window._sharedData`` in the early-2017
  (``TagPage[0].tag.media.nodes``) or late-2017 (``TagPage[0].graphql.hashtag``) shape, the
  Commons bundle (``en_US_Commons.js``, or ``ConsumerCommons.js`` with ``bundle="consumer"``) that
  holds the ``query_id``, and ``GET /graphql/query/?query_id=…`` with flat ``tag_name``/``first``/
  ``after`` or ``variables=`` JSON.
* ``web`` (today): ``GET /api/v1/tags/web_info/?tag_name=…`` (``data.top`` and ``data.recent``;
  ``top_only=True`` leaves out ``recent``, as web pages have since 2022-23), later pages from
  ``POST /api/v1/tags/<tag>/sections/`` (form ``tab``, ``max_id``, ``page``, ``next_media_ids``,
  ``include_persistent``, ``surface``), and ``GET /api/v1/media/<pk>/info/``. Sections mix
  ``medias``, ``fill_items`` and ``one_by_two_item.clips.items``. Every web request needs the
  fake ``sessionid`` (none: a redirect to the login page; another: 403 ``login_required``); a POST
  needs ``X-CSRFToken`` equal to the current ``csrftoken`` cookie, which ``web_info`` renews with
  ``Set-Cookie``. The old ``/explore/tags/<tag>/?__a=1`` pages answer 404, as since December 2023.
  Cursors carry the time they were issued and expire after ``cursor_ttl`` seconds (400).
* images: ``<base url>/v/t51.2885-15/<shortcode>_<n>_<w>x<h>_n.jpg?…&oh=<signature>&oe=<hex expiry>``
  (the server is its own CDN; the client allows the ``base_url`` host). A URL whose ``oe`` has
  passed, or whose signature is wrong, answers 403, as Instagram's CDN does; URLs live
  ``url_ttl`` seconds, and the posts in ``expired_urls`` are listed with URLs already expired
  (``media/<pk>/info/`` gives fresh ones, except for the posts in ``always_expired``).

Posts are generated: ``n_posts`` of them, newest first, from ``n_owners`` accounts; every tenth
is a carousel of 2 or 3 images and every fifteenth a video (its cover image is served). The top
tab lists every third post. Image bodies are real photos (by default a few from
``../shared/data/faces/people``; synthetic ones if that folder is missing) with the image's key
written into a JPEG comment, so every image has its own bytes but decodes to the same pixels.

Faults are switched on with :class:`Fault` objects (429 with ``Retry-After``, 500s, responses
slower than a timeout, truncated image bodies, HTML where JSON is expected, a login redirect,
``checkpoint_required``, 401 "please wait" with or without ``require_login``, ``status: fail``,
a repeated page, an error that echoes the Cookie header, an oversized answer, an image redirect,
a bundle without ``query_id``), ``corrupt_images`` (image keys always served cut short),
``odd_fields`` (fields to overwrite in a post's media, e.g. ``{"FkPost00003": {"taken_at": 1e20}}``)
and ``image_urls`` (a post's image URL replaced, e.g. by ``file:///etc/passwd``). Every request
is recorded in ``requests`` (time, endpoint, path, query, form, status), so tests can check rates
and waits.

Use it as a context manager::

    with FakeInstagram(n_posts=60) as server:
        collect_hashtag(catalog, ["selfie"], api="web", base_url=server.url,
                        cookies=server.cookies_file(tmp_path))

or, for a notebook, ``with serve() as url: …``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import re
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

from .fake_data import (FakePost, Fault, LoggedRequest, _as_jpeg, _b64, _default_image_paths, _synthetic_images,
                        _unb64, _with_comment)

QUERY_ID = "17875800862117404"
#: The hashtag query ids the imitation's GraphQL takes: its bundle's, and the one IFFSE's seed used.
QUERY_IDS = (QUERY_ID, "17882293912014529")
BUNDLE_HASH = "6a9b1ac4f2d1"
WEB_APP_ID = "936619743392459"
#: The imitation signs its image URLs with this key (``oh=``).
_SIGNING_KEY = b"iffse-fake-cdn"
#: Fake session cookies the imitation accepts (it checks ``sessionid`` and the CSRF token).
FAKE_COOKIES = {"sessionid": "FAKEsession%3A99887766001%3Asecret", "csrftoken": "FAKEcsrfSECRETtoken",
                "ds_user_id": "99887766001", "mid": "FAKEmidValue", "ig_did": "FAKE-IG-DID"}

_IMAGE_RE = re.compile(r"/(?P<key>[A-Za-z0-9]+_\d+)_\d+x\d+_n\.jpg$")


class FakeInstagram:
    """The imitation server; see the module docstring. ``url`` is its base URL once started."""

    def __init__(self, n_posts: int = 300, *, tag: str = "selfie", page_size: int = 12,
                 legacy_shape: str = "graphql", images: list[str | Path] | None = None,
                 n_owners: int = 37, require_login: bool = True, image_delay: float = 0.0,
                 faults: list[Fault] | None = None, corrupt_images: set[str] | None = None,
                 top_only: bool = False, bundle: str = "en_US", url_ttl: float = 3600.0,
                 expired_urls: set[str] | None = None, always_expired: set[str] | None = None,
                 cursor_ttl: float | None = None, odd_fields: dict[str, dict] | None = None,
                 image_urls: dict[str, str] | None = None, rotate_csrf: bool = True, clock=time.time):
        if legacy_shape not in ("graphql", "2017"):
            raise ValueError("legacy_shape is 'graphql' (late 2017) or '2017' (early 2017)")
        if bundle not in ("en_US", "consumer"):
            raise ValueError("bundle is 'en_US' (en_US_Commons.js) or 'consumer' (ConsumerCommons.js)")
        self.top_only = top_only
        self.bundle = bundle
        self.url_ttl = url_ttl
        self.expired_urls = set(expired_urls or ()) | set(always_expired or ())
        self.always_expired = set(always_expired or ())
        self.cursor_ttl = cursor_ttl
        self.odd_fields = dict(odd_fields or {})
        self.image_url_overrides = dict(image_urls or {})
        self.rotate_csrf = rotate_csrf
        self.clock = clock
        self.csrftoken = FAKE_COOKIES["csrftoken"]
        #: Every cookie value this server handed out with Set-Cookie (secrets, like FAKE_COOKIES).
        self.issued_cookies: list[str] = []
        self.tag = tag
        self.page_size = page_size
        self.legacy_shape = legacy_shape
        self.require_login = require_login
        self.image_delay = image_delay
        self.faults: list[Fault] = list(faults or [])
        self.corrupt_images: set[str] = set(corrupt_images or ())
        paths = [Path(p) for p in images] if images is not None else _default_image_paths()
        self._bases = [_as_jpeg(p.read_bytes()) for p in paths] or _synthetic_images()
        self.posts: list[FakePost] = [self._make_post(i, n_owners) for i in range(n_posts)]
        self._by_key = {k: (p, n) for p in self.posts for n, k in enumerate(p.image_keys)}
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None

    # -- data -------------------------------------------------------------------------------
    def _make_post(self, i: int, n_owners: int) -> FakePost:
        owner = i % n_owners
        shortcode = f"FkPost{i:05d}"
        if i % 10 == 4:
            kind, n_images = "carousel", 2 + (i % 3 == 0)
        elif i % 15 == 7:
            kind, n_images = "video", 1
        else:
            kind, n_images = "image", 1
        return FakePost(index=i, shortcode=shortcode, media_id=str(3391234567890000000 + i),
                        owner_id=str(51230000 + owner), username=f"fake_user_{owner:02d}",
                        taken_at=1718450000 - 97 * i, caption=None if i % 7 == 3 else f"post {i} #{self.tag} #Fake{i % 4} with @fake_friend_{owner:02d}",
                        kind=kind, image_keys=tuple(f"{shortcode}_{n}" for n in range(n_images)))

    def image_bytes(self, key: str) -> bytes:
        post, n = self._by_key[key]
        return _with_comment(self._bases[(post.index * 3 + n) % len(self._bases)], f"iffse-fake {key}")

    def feed(self, tab: str = "recent") -> list[FakePost]:
        """The posts of a tab, in the order it lists them: recent lists all, top every third."""
        return self.posts if tab == "recent" else [p for p in self.posts if p.index % 3 == 0]

    def expected_images(self, api: str, n_posts: int | None = None, tab: str = "recent") -> dict[str, tuple[FakePost, int]]:
        """``source_id -> (post, image number)`` that a crawl of the first ``n_posts`` should store."""
        return {f"{p.shortcode}/{n}": (p, n) for p in self.feed(tab)[:n_posts] for n, _ in enumerate(p.images(api))}

    def cookies_file(self, folder: str | Path, fmt: str = "netscape") -> Path:
        """Write :data:`FAKE_COOKIES` as a browser export (``netscape`` cookies.txt or ``json``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == "json":
            path = folder / "cookies.json"
            path.write_text(json.dumps([{"domain": ".instagram.com", "name": k, "value": v, "path": "/",
                                         "secure": True, "httpOnly": k == "sessionid"}
                                        for k, v in FAKE_COOKIES.items()]))
        else:
            path = folder / "cookies.txt"
            lines = ["# Netscape HTTP Cookie File"]
            lines += [f".instagram.com\tTRUE\t/\tTRUE\t2000000000\t{k}\t{v}" for k, v in FAKE_COOKIES.items()]
            path.write_text("\n".join(lines) + "\n")
        return path

    def _sign(self, key: str, oe: str) -> str:
        return "00_" + hmac.new(_SIGNING_KEY, f"{key}:{oe}".encode(), hashlib.sha256).hexdigest()[:24]

    def _image_url(self, key: str, w: int = 1080, h: int = 1080, fresh: bool = False) -> str:
        shortcode = key.rsplit("_", 1)[0]
        if shortcode in self.image_url_overrides:
            return self.image_url_overrides[shortcode]
        expired = shortcode in self.always_expired or (shortcode in self.expired_urls and not fresh)
        oe = f"{int(self.clock() + (-60 if expired else self.url_ttl)):X}"
        return (f"{self.url}/v/t51.2885-15/{key}_{w}x{h}_n.jpg?stp=dst-jpg_e35&_nc_ht=scontent.cdninstagram.test"
                f"&oh={self._sign(key, oe)}&oe={oe}")

    # node builders ---------------------------------------------------------------------------
    def _node_2017(self, p: FakePost) -> dict:
        node = {"__typename": {"image": "GraphImage", "video": "GraphVideo", "carousel": "GraphSidecar"}[p.kind],
                "id": p.media_id, "code": p.shortcode, "date": p.taken_at, "owner": {"id": p.owner_id},
                "display_src": self._image_url(p.image_keys[0]), "thumbnail_src": self._image_url(p.image_keys[0], 640, 640),
                "is_video": p.kind == "video", "dimensions": {"height": 1080, "width": 1080},
                "comments": {"count": p.index % 5}, "likes": {"count": p.index * 3 % 97}}
        if p.caption is not None:
            node["caption"] = p.caption
        return node

    def _node_graphql(self, p: FakePost) -> dict:
        return {"__typename": {"image": "GraphImage", "video": "GraphVideo", "carousel": "GraphSidecar"}[p.kind],
                "id": p.media_id, "shortcode": p.shortcode, "taken_at_timestamp": p.taken_at,
                "owner": {"id": p.owner_id}, "display_url": self._image_url(p.image_keys[0]),
                "thumbnail_src": self._image_url(p.image_keys[0], 640, 640), "is_video": p.kind == "video",
                "edge_media_to_caption": {"edges": [] if p.caption is None else [{"node": {"text": p.caption}}]},
                "dimensions": {"height": 1080, "width": 1080}, "edge_media_to_comment": {"count": p.index % 5},
                "edge_liked_by": {"count": p.index * 3 % 97}, "comments_disabled": False,
                "accessibility_caption": "Image may contain: 1 person, closeup"}

    def _media_web(self, p: FakePost, fresh: bool = False) -> dict:
        def versions(key):
            return {"candidates": [{"width": 1080, "height": 1080, "url": self._image_url(key, fresh=fresh)},
                                   {"width": 640, "height": 640, "url": self._image_url(key, 640, 640, fresh=fresh)}]}

        m = {"taken_at": p.taken_at, "pk": p.media_id, "id": f"{p.media_id}_{p.owner_id}",
             "media_type": {"image": 1, "video": 2, "carousel": 8}[p.kind], "code": p.shortcode,
             "comment_count": p.index % 5, "like_count": p.index * 3 % 97, "has_liked": False,
             "user": {"pk": p.owner_id, "pk_id": p.owner_id, "id": p.owner_id, "username": p.username,
                      "full_name": p.username.replace("_", " ").title(), "is_private": False},
             "caption": None if p.caption is None else {"text": p.caption, "user_id": p.owner_id, "media_id": p.media_id},
             "original_width": 1080, "original_height": 1080, "image_versions2": versions(p.image_keys[0]),
             "accessibility_caption": f"Photo by {p.username}. May be a closeup of 1 person.",
             "product_type": {"image": "feed", "video": "clips", "carousel": "carousel_container"}[p.kind]}
        if p.index % 4 == 1:
            m["location"] = {"pk": 212988663 + p.index, "name": f"Fake Place {p.index % 5}", "lat": 48.85, "lng": 2.35}
        if p.kind == "video":
            m["video_versions"] = [{"type": 101, "width": 720, "height": 720,
                                    "url": f"{self.url}/o1/v/t16/{p.shortcode}.mp4?oh=00_FAKE"}]
            m["video_duration"] = 7.5
        if p.kind == "carousel":
            m["carousel_media_count"] = len(p.image_keys)
            m["carousel_media"] = [{"id": f"{int(p.media_id) + 1000 * (n + 1)}_{p.owner_id}",
                                    "pk": str(int(p.media_id) + 1000 * (n + 1)), "media_type": 1,
                                    "carousel_parent_id": m["id"], "image_versions2": versions(k)}
                                   for n, k in enumerate(p.image_keys)]
        m.update(self.odd_fields.get(p.shortcode, {}))
        return m

    def _legacy_connection(self, offset: int, first: int) -> dict:
        page = self.posts[offset:offset + first]
        end = offset + len(page)
        more = end < len(self.posts)
        return {"count": len(self.posts), "page_info": {"has_next_page": more,
                                                        "end_cursor": _b64(f"cursor:{end}") if more else None}, "page": page}

    def _cursor(self, tab: str, offset: int) -> str:
        return _b64(f"{tab}:{offset}:{self.clock():.3f}")

    def _web_feed(self, tab: str, offset: int, cursor: str | None = None) -> dict:
        """A page of a tab from ``offset``; its sections take turns at the three layouts."""
        posts = self.feed(tab)
        page = posts[offset:offset + self.page_size]
        end = offset + len(page)
        more = end < len(posts)
        sections = []
        for n, i in enumerate(range(0, len(page), 3)):
            items = [{"media": self._media_web(p)} for p in page[i:i + 3]]
            if n % 3 == 0:
                sections.append({"layout_type": "media_grid", "feed_type": "media", "layout_content": {"medias": items}})
            elif n % 3 == 1:
                sections.append({"layout_type": "one_by_two_left", "feed_type": "clips", "layout_content": {
                    "one_by_two_item": {"clips": {"id": "clips", "items": items[:1]}}, "fill_items": items[1:]}})
            else:
                sections.append({"layout_type": "one_by_two_right", "feed_type": "clips", "layout_content": {
                    "fill_items": items[:2], "one_by_two_item": {"clips": {"id": "clips", "items": items[2:]}}}})
        return {"sections": sections, "more_available": more,
                "next_max_id": cursor or (self._cursor(tab, end) if more else None),
                "next_page": offset // self.page_size + 1,
                "next_media_ids": [int(p.media_id) for p in page[-2:]] if more else []}

    # -- serving ----------------------------------------------------------------------------
    def start(self) -> "FakeInstagram":
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                try:
                    server._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_POST = do_GET

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-instagram", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeInstagram":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self, endpoint: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if endpoint is None or r.endpoint == endpoint]

    def _classify(self, path: str, query: dict) -> tuple[str, str]:
        """(endpoint, finer name): image, graphql, web (web_info, sections, media_info, old_a1), page."""
        if _IMAGE_RE.search(path):
            return "image", "image"
        if path.startswith("/graphql/"):
            return "graphql", "graphql"
        if path.startswith("/api/v1/"):
            sub = ("web_info" if path == "/api/v1/tags/web_info/" else "sections" if path.endswith("/sections/")
                   else "media_info" if path.startswith("/api/v1/media/") else "web")
            return "web", sub
        if path.startswith("/explore/tags/") and "__a" in query:
            return "web", "old_a1"
        if path.startswith("/explore/tags/") or path.startswith("/static/"):
            return "page", "page"
        return "other", "other"

    def _pick_fault(self, endpoint: str, sub: str) -> Fault | None:
        with self._lock:
            n = self._counts[endpoint] = self._counts.get(endpoint, 0) + 1
            m = self._counts[f"sub:{sub}"] = self._counts.get(f"sub:{sub}", 0) + 1
            for f in self.faults:
                if f.endpoint == sub and sub != endpoint:
                    seen = m
                elif f.endpoint == endpoint or f.endpoint == "any" or (f.endpoint == "api" and endpoint != "image"):
                    seen = n
                else:
                    continue
                if seen > f.after and (f.count is None or f.count > 0):
                    if f.count is not None:
                        f.count -= 1
                    return f
        return None

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(h.path)
        path, query = parsed.path, dict(urllib.parse.parse_qsl(parsed.query))
        form = {}
        if h.command == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(h.rfile.read(length).decode("utf-8", "replace")))
        endpoint, sub = self._classify(path, query)
        cookies = {}
        for part in (h.headers.get("Cookie") or "").split(";"):
            if "=" in part:
                k, v = part.strip().split("=", 1)
                cookies[k] = v
        fault = self._pick_fault(endpoint, sub)
        status, headers, body, cut = self._respond(endpoint, sub, h, path, query, form, cookies, fault)
        with self._lock:
            self.requests.append(LoggedRequest(
                t=time.monotonic(), method=h.command, path=path, query=query, form=form, endpoint=endpoint,
                status=status, fault=fault.kind if fault else None, has_session=bool(cookies.get("sessionid")),
                app_id=h.headers.get("X-IG-App-ID"), user_agent=h.headers.get("User-Agent"),
                csrf=h.headers.get("X-CSRFToken")))
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        elif endpoint == "image" and self.image_delay:
            time.sleep(self.image_delay)
        h.send_response(status)
        for k, v in headers.items():
            for value in (v if isinstance(v, list) else [v]):
                h.send_header(k, value)
        h.send_header("Content-Length", str(len(body)))
        if cut:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.write(body[:len(body) // 2] if cut else body)
        h.wfile.flush()

    def _json(self, status: int, payload: dict, extra: dict | None = None):
        return status, {"Content-Type": "application/json; charset=utf-8", **(extra or {})}, json.dumps(payload).encode(), False

    def _respond(self, endpoint: str, sub: str, h, path: str, query: dict, form: dict, cookies: dict,
                 fault: Fault | None):
        kind = fault.kind if fault else None
        if kind == "429":
            extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return self._json(429, {"message": "Please wait a few minutes before you try again.", "status": "fail"}, extra)
        if kind == "500":
            return 500, {"Content-Type": "text/html"}, b"<html><body>Oops, an error occurred.</body></html>", False
        if kind == "please_wait":
            return self._json(401, {"message": "Please wait a few minutes before you try again.", "status": "fail"})
        if kind == "locked":
            return self._json(401, {"message": "Please wait a few minutes before you try again.",
                                    "require_login": True, "status": "fail"})
        if kind == "login_redirect":
            return 302, {"Location": f"https://www.instagram.com/accounts/login/?next={urllib.parse.quote(path)}"}, b"", False
        if kind == "login_required":
            return self._json(403, {"message": "login_required", "require_login": True, "status": "fail"})
        if kind == "checkpoint":
            return self._json(400, {"message": "checkpoint_required", "checkpoint_url": "https://www.instagram.com/challenge/FAKE/",
                                    "lock": False, "status": "fail"})
        if kind == "status_fail":
            return self._json(200, {"message": "execution failure", "status": "fail"})
        if kind == "echo_cookie":
            return self._json(400, {"message": f"bad request (Cookie: {h.headers.get('Cookie')}; "
                                               f"X-CSRFToken: {h.headers.get('X-CSRFToken')})", "status": "fail"})
        if kind == "huge":
            return self._json(200, {"status": "ok", "padding": "x" * fault.size})
        if kind == "html" and endpoint != "image":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, b"<!DOCTYPE html><html><body>Sorry, something went wrong.</body></html>", False

        if endpoint == "image":
            if kind == "redirect":
                return 302, {"Location": fault.location}, b"", False
            m = _IMAGE_RE.search(path)
            if m is None or m["key"] not in self._by_key:
                return 404, {"Content-Type": "text/plain"}, b"not found", False
            oe = query.get("oe", "")
            try:
                expires = int(oe, 16)
            except ValueError:
                expires = 0
            if query.get("oh") != self._sign(m["key"], oe) or expires <= self.clock():
                return 403, {"Content-Type": "text/plain"}, b"URL signature expired", False
            body = self.image_bytes(m["key"])
            if m["key"] in self.corrupt_images:
                body = body[:len(body) // 3]
            return 200, {"Content-Type": "image/jpeg"}, body, kind == "truncate"
        if path == "/accounts/login/":
            return 200, {"Content-Type": "text/html"}, b"<html><body>Log in to Instagram</body></html>", False
        if endpoint == "page" and path.startswith("/static/bundles/"):
            js = (f'__d(function(e,t,n,r){{"use strict";var o=t(12),c="{QUERY_ID}",l="TAG_MEDIA_UPDATED";'
                  f'var s={{next:function(e,t){{return{{pagination:e.tagMedia.byTagName.get(t).pagination}},'
                  f'queryId:"{QUERY_ID}",queryParams:{{tag_name:t}}}}}}}},"TagMediaActions",[]);')
            if kind == "missing_query_id":
                js = '__d(function(e,t,n,r){"use strict";var o=t(12);n.exports={}},"Other",[]);'
            return 200, {"Content-Type": "application/javascript"}, js.encode(), False
        m = re.fullmatch(r"/explore/tags/([^/]+)/", path)
        if endpoint == "page" and m:
            if m[1] != self.tag:
                return 404, {"Content-Type": "text/html"}, b"<html><body>Page not found</body></html>", False
            return 200, {"Content-Type": "text/html; charset=utf-8"}, self._tag_page_html().encode(), False
        if endpoint == "graphql":
            return self._graphql(query)
        if endpoint == "web":
            return self._web(sub, h, path, query, form, cookies, kind)
        return 404, {"Content-Type": "text/html"}, b"<html><body>Page not found</body></html>", False

    def _web(self, sub: str, h, path: str, query: dict, form: dict, cookies: dict, kind: str | None):
        if sub == "old_a1":  # gone since December 2023
            return 404, {"Content-Type": "text/html"}, b"<html><body>Page not found</body></html>", False
        if self.require_login:
            if not cookies.get("sessionid"):
                return 302, {"Location": "https://www.instagram.com/accounts/login/"}, b"", False
            if cookies["sessionid"] != FAKE_COOKIES["sessionid"]:
                return self._json(403, {"message": "login_required", "require_login": True, "status": "fail"})
        # Double submit, as Django checks it: the header equals the cookie, and the cookie is one we issued.
        if h.command == "POST" and (h.headers.get("X-CSRFToken") != cookies.get("csrftoken")
                                    or cookies.get("csrftoken") not in (FAKE_COOKIES["csrftoken"], *self.issued_cookies)):
            return self._json(403, {"message": "CSRF token missing or incorrect", "status": "fail"})
        if sub == "web_info":
            if h.command != "GET":
                return self._json(405, {"message": "", "status": "fail"})
            if query.get("tag_name") != self.tag:
                return self._json(404, {"message": "", "status": "fail"})
            data = {"id": 17843744563034624, "name": self.tag, "media_count": len(self.posts),
                    "top": self._web_feed("top", 0)}
            if not self.top_only:
                data["recent"] = self._web_feed("recent", 0)
            extra = {}
            if self.rotate_csrf:
                with self._lock:
                    self.csrftoken = f"FAKEcsrfRENEWED{len(self.issued_cookies):03d}x"
                    rur = f"FAKErur{len(self.issued_cookies):03d}"
                    self.issued_cookies += [self.csrftoken, rur]
                extra["Set-Cookie"] = [f"csrftoken={self.csrftoken}; Domain=.instagram.com; Path=/; Secure",
                                       f'rur="{rur}"; Domain=.instagram.com; HttpOnly; Path=/; Secure']
            return self._json(200, {"data": data, "status": "ok"}, extra)
        m = re.fullmatch(r"/api/v1/tags/([^/]+)/sections/", path)
        if sub == "sections" and m:
            if h.command != "POST":
                return self._json(405, {"message": "", "status": "fail"})
            if m[1] != self.tag:
                return self._json(404, {"message": "", "status": "fail"})
            tab = form.get("tab")
            try:
                cursor_tab, offset, issued = _unb64(form.get("max_id", "")).split(":")
                offset, issued = int(offset), float(issued)
                json.loads(form.get("next_media_ids", "[]"))
            except ValueError:
                return self._json(400, {"message": "invalid max_id", "status": "fail"})
            if tab not in ("recent", "top") or cursor_tab != tab or form.get("surface") != "grid":
                return self._json(400, {"message": "invalid tab", "status": "fail"})
            if self.cursor_ttl is not None and self.clock() - issued > self.cursor_ttl:
                return self._json(400, {"message": "invalid max_id (expired)", "status": "fail"})
            if kind == "repeat":  # the page before, with the cursor it was asked with
                return self._json(200, {**self._web_feed(tab, max(0, offset - self.page_size), form["max_id"]),
                                        "status": "ok"})
            return self._json(200, {**self._web_feed(tab, offset), "status": "ok"})
        m = re.fullmatch(r"/api/v1/media/(\d+)/info/", path)
        if sub == "media_info" and m:
            post = next((p for p in self.posts if p.media_id == m[1]), None)
            if post is None:
                return self._json(404, {"message": "Media not found or unavailable", "status": "fail"})
            return self._json(200, {"items": [self._media_web(post, fresh=True)], "num_results": 1, "status": "ok"})
        return self._json(404, {"message": "", "status": "fail"})

    def _bundle_name(self) -> str:
        return "en_US_Commons.js" if self.bundle == "en_US" else "es_ES/ConsumerCommons.js"

    def _tag_page_html(self) -> str:
        conn = self._legacy_connection(0, self.page_size)
        if self.legacy_shape == "2017":
            tag = {"name": self.tag, "media": {"count": conn["count"], "page_info": conn["page_info"],
                                               "nodes": [self._node_2017(p) for p in conn["page"]]},
                   "top_posts": {"nodes": []}}
            page = {"tag": tag}
        else:
            page = {"graphql": {"hashtag": {"name": self.tag, "id": "17843744563034624", "edge_hashtag_to_media": {
                "count": conn["count"], "page_info": conn["page_info"],
                "edges": [{"node": self._node_graphql(p)} for p in conn["page"]]},
                "edge_hashtag_to_top_posts": {"edges": []}}}}
        shared = {"config": {"csrf_token": "FAKEcsrfTOKEN", "viewer": None}, "entry_data": {"TagPage": [page]}}
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>#{self.tag} • Instagram photos and videos</title>\n"
                f'<link rel="preload" href="/static/bundles/{self._bundle_name()}/{BUNDLE_HASH}.js" as="script" />\n'
                "</head>\n<body>\n<span id=\"react-root\"></span>\n"
                f'<script type="text/javascript">window._sharedData = {json.dumps(shared)};</script>\n'
                f'<script type="text/javascript" src="/static/bundles/{self._bundle_name()}/{BUNDLE_HASH}.js"></script>\n'
                "</body>\n</html>\n")

    def _graphql(self, query: dict):
        params = dict(query)
        # Early 2017 took flat tag_name/first/after (as IFFSE sent them); late 2017 variables= JSON.
        if "variables" in params:
            if self.legacy_shape == "2017":
                return self._json(400, {"message": "missing tag_name", "status": "fail"})
            with contextlib.suppress(ValueError):
                params.update(json.loads(params["variables"]))
        elif self.legacy_shape == "graphql":
            return self._json(400, {"message": "missing variables", "status": "fail"})
        if params.get("query_id") not in QUERY_IDS:
            return self._json(400, {"message": "invalid query_id", "status": "fail"})
        if params.get("tag_name") != self.tag:
            return self._json(200, {"data": {"hashtag": None}, "status": "ok"})
        offset = int(_unb64(params["after"]).split(":")[1]) if params.get("after") else 0
        conn = self._legacy_connection(offset, max(1, min(int(params.get("first", 12)), 50)))
        return self._json(200, {"data": {"hashtag": {"name": self.tag, "edge_hashtag_to_media": {
            "count": conn["count"], "page_info": conn["page_info"],
            "edges": [{"node": self._node_graphql(p)} for p in conn["page"]]}}}, "status": "ok"})


@contextlib.contextmanager
def serve(n_posts: int = 300, **kwargs) -> Iterator[str]:
    """Run a :class:`FakeInstagram` for the duration of a ``with`` block and yield its base URL.

    Pass the URL as ``base_url`` to the collector (its host serves the images too). Keyword arguments go
    to :class:`FakeInstagram` (``tag``, ``page_size``, ``faults``…). For the web API, log in with
    the fake cookies: ``FakeInstagram.cookies_file``, or ``cookies=FAKE_COOKIES`` in Python.
    """
    with FakeInstagram(n_posts, **kwargs) as server:
        yield server.url


__all__ = ["BUNDLE_HASH", "FAKE_COOKIES", "FakeInstagram", "FakePost", "Fault", "LoggedRequest", "QUERY_ID", "QUERY_IDS",
           "WEB_APP_ID", "serve"]
