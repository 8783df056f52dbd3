"""The crawl: pages of a hashtag into the catalogue, resumable; opt-out lists and forget."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ... import images
from ...catalog import OPTOUT_SOURCE  # noqa: F401  (re-exported: the crawl state of forgotten names)
from ...errors import BadDownload, BadPost, CheckpointRequired, InstagramError, LoginRequired, SourceError
from ...records import PhotoRecord
from .client import DEFAULT_BASE_URL, TABS, InstagramClient
from .cookies import SessionCookies
from .posts import Post

log = logging.getLogger(__name__)

KIND = "instagram"
STATE_SOURCE = "instagram"
#: A saved cursor older than this is not resumed (instaloader's shelf life for resumable iterators).
CURSOR_MAX_AGE_DAYS = 29
#: A page with no new posts is asked again this many times, then the feed counts as exhausted.
REPEATS_ALLOWED = 2
#: At most this many images that failed retryably are remembered per feed and tried by the next run.
RETRY_LIST_MAX = 200


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
    """Owners and shortcodes removed with :meth:`Catalog.forget`; the collector skips them from then on."""
    return catalog.forgotten_names()


def _opted_out(post: Post, names: set[str]) -> bool:
    return any(v is not None and v.lower() in names for v in (post.username, post.owner_id, post.shortcode))


def forget(catalog, *, owner: str | None = None, photo: str | int | None = None) -> int:
    """Remove and erase an owner's photos or one photo: :meth:`iffse_lib.catalog.Catalog.forget`."""
    return catalog.forget(owner=owner, photo=photo)


# -- the crawl ------------------------------------------------------------------------------
def state_key(api: str, tag: str, tab: str = "recent") -> str:
    key = f"{api}:{tag.lower()}"
    return key if api == "legacy" or tab == "recent" else f"{key}:{tab}"


def _unix(when) -> float | None:
    if when is None:
        return None
    if isinstance(when, (int, float)):
        return float(when)
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if isinstance(when, date) and not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def collect_hashtag(catalog, tags: str | Iterable[str], *, api: str = "web", base_url: str = DEFAULT_BASE_URL,
                    image_hosts: Iterable[str] = (), image_host: str | None = None,
                    cookies: SessionCookies | str | Path | None = None, max_posts: int | None = None,
                    workers: int = 8, restart: bool = False, update: bool = False, since=None, until=None,
                    tab: str = "recent", opt_out: str | Path | Iterable[str] | None = None, progress: bool = True,
                    client: InstagramClient | None = None, **client_options) -> dict[str, Any]:
    """Collect the photos of one or more hashtags into ``catalog``; returns counts.

    Parameters
    ----------
    catalog : Catalog
        Where the photos go (``kind="instagram"``, ``source_id="<shortcode>/<n>"``, metadata in
        ``photos.meta``: shortcode, media_id, owner_id, username, taken_at, caption, hashtag,
        media_type, image_number, image_url, fetched_at, api, like_count, comment_count, hashtags,
        mentions, location, original_width, original_height, accessibility_caption,
        product_type, tab; ``catalog.photos()`` shows the post's as columns).
    tags : str or list of str
        Hashtags without ``#``.
    api : "web" or "legacy"
        Today's web API (needs ``cookies``) or IFFSE's 2017 flow (see the package docstring).
    base_url : str
        Instagram's address; point it at :func:`~iffse_lib.testing.fake_instagram.serve` to work
        offline. Its host is an allowed image host.
    image_hosts, image_host : str
        More allowed image hosts, besides ``cdninstagram.com``, ``fbcdn.net`` and ``base_url``'s.
    cookies : path, SessionCookies or mapping
        A logged-in browser session's cookies (a Netscape cookies.txt or JSON export, or
        ``{name: value}``); kept in memory (``Set-Cookie`` refreshes included), never stored.
        With the imitation, ``fake_instagram.FAKE_COOKIES``.
    max_posts : int
        Stop after this many posts of each tag's feed, counted over resumed runs; a post is
        counted once, by its media id (pk) or shortcode, however often Instagram lists it.
    workers : int
        Images downloaded at once (pages are fetched one after the other).
    restart : bool
        Forget the saved crawl state and walk each feed from its newest post again (photos
        already in the catalogue are still not downloaded again).
    update : bool
        Walk from the newest post and stop at the first page whose posts are all in the
        catalogue (instaloader's ``--fast-update``); the saved crawl state is left as it was.
    since, until : date, datetime, ISO text or unix seconds
        Only posts taken at or after ``since`` and before ``until`` (UTC unless they say
        otherwise). The recent feed runs newest first, so a page older than ``since`` ends it.
    tab : "recent", "top" or "both"
        The web feed: ``recent`` falls back to ``top`` when Instagram shows only top posts.
    opt_out : path or iterable of str
        Usernames, owner ids or shortcodes whose posts are skipped before download. Owners and
        posts removed with :func:`forget` are always skipped.
    client : InstagramClient
        A ready client; otherwise one is made from ``api``, ``base_url``, ``image_hosts``,
        ``cookies`` and ``client_options`` (``limiter``, ``timeout``, ``user_agent``,
        ``max_retries``, ``backoff``, ``soft_block_wait``, ``page_size``, ``query_id`` …).

    The crawl state (cursor, pages, posts) is saved in the catalogue after each page, so the
    same call again goes on where it stopped; a cursor saved more than 29 days ago is not
    resumed (the crawl starts over and says so in ``notes``). Bad downloads and posts with odd
    fields are recorded with ``catalog.reject_source`` (see ``catalog.errors()``) and the crawl
    goes on; downloads that kept failing, and expired image URLs that could not be refreshed,
    are recorded as errors and tried again by the next run. Raises :class:`LoginRequired`,
    :class:`CheckpointRequired`, :class:`RateLimited`, :class:`QueryIdNotFound` or
    :class:`InstagramError` when the crawl cannot go on.
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
    if tab not in TABS:
        raise ValueError(f"tab must be one of {TABS}, not {tab!r}")
    since_ts, until_ts = _unix(since), _unix(until)
    if client is None:
        client = InstagramClient(api, base_url=base_url, image_hosts=image_hosts, image_host=image_host,
                                 cookies=cookies, **client_options)
    if isinstance(opt_out, (str, Path)):
        names = load_opt_out(opt_out)
    else:
        names = {str(n).strip().lstrip("@").lower() for n in opt_out or ()}
    names |= forgotten_names(catalog)
    seen = catalog.seen_sources(KIND)
    feeds = [("recent", True)] if tab == "recent" else [("top", False)] if tab == "top" else [("recent", False), ("top", False)]
    if client.api == "legacy":
        feeds = [("recent", False)]
    run = _Run(catalog, client, seen, names, since_ts, until_ts)
    per_tag: dict[str, dict] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="iffse-download")
    try:
        for tag in tags:
            counted: set[str] = set()  # posts counted towards max_posts in this run, by pk or shortcode
            for feed_tab, fallback in feeds:
                key = state_key(client.api, tag, feed_tab)
                counts = Counter(dict.fromkeys(_COUNT_NAMES, 0))
                bar = tqdm(total=max_posts, desc=f"#{tag}" + (f" ({feed_tab})" if tab == "both" else ""),
                           unit="post", disable=not progress)
                try:
                    result = run.crawl_feed(tag, key, feed_tab, fallback, counted, counts, bar, pool,
                                            max_posts=max_posts, restart=restart, update=update)
                finally:
                    bar.close()
                name = tag if tab != "both" else f"{tag} ({feed_tab})"
                per_tag[name] = {**counts, **result}
                run.totals.update({k: v for k, v in counts.items()})
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return {**run.totals, "errors": dict(run.errors), "retries": dict(client.retries),
            "requests": dict(client.requests), "tags": per_tag, "notes": run.notes,
            "seconds": round(time.perf_counter() - run.t0, 3)}


_COUNT_NAMES = ("posts", "stored", "duplicates", "known", "opted_out", "out_of_range", "bad_posts", "pages")


class _Run:
    """What one :func:`collect_hashtag` call shares between its feeds."""

    def __init__(self, catalog, client: InstagramClient, seen: set[str], names: set[str], since: float | None,
                 until: float | None):
        self.catalog, self.client, self.seen, self.names = catalog, client, seen, names
        self.since, self.until = since, until
        self.totals: Counter[str] = Counter(dict.fromkeys(_COUNT_NAMES, 0))
        self.errors: Counter[str] = Counter()
        self.notes: list[str] = []
        self.t0 = time.perf_counter()

    def note(self, message: str) -> None:
        """Something the user should read in the summary (the command prints the notes)."""
        log.info("%s", message)
        self.notes.append(message)

    def _fresh_state(self, tag: str, tab: str, fallback: bool) -> dict:
        return {"tag": tag, "api": self.client.api, "tab": tab, "fallback": fallback, "cursor": None, "pages": 0,
                "posts": 0, "done": False}

    def crawl_feed(self, tag: str, key: str, tab: str, fallback: bool, counted: set[str], counts: Counter, bar,
                   pool, *, max_posts: int | None, restart: bool, update: bool) -> dict:
        catalog, client = self.catalog, self.client
        saved = None if restart else catalog.get_state(STATE_SOURCE, key)
        if restart:
            catalog.set_state(STATE_SOURCE, key, None)
        retry_list = list((saved or {}).get("retry") or [])
        if update or saved is None:
            state = self._fresh_state(tag, tab, fallback)
        else:
            state = {**self._fresh_state(tag, tab, fallback), **saved}
            age_days = (time.time() - float(state.get("saved_at") or time.time())) / 86400
            if state.get("cursor") is not None and age_days > CURSOR_MAX_AGE_DAYS:
                self.note(f"#{tag}: the saved cursor is {age_days:.0f} days old (Instagram's cursors last about "
                          f"{CURSOR_MAX_AGE_DAYS} days); starting over from the newest post")
                state = self._fresh_state(tag, tab, fallback)
        if retry_list and client.api == "web":
            retry_list = self._retry_failed(tag, retry_list, counts)
            if saved is not None:
                catalog.set_state(STATE_SOURCE, key, {**saved, "retry": retry_list})
        bar.reset(total=max_posts)
        bar.update(state["posts"] if max_posts is None else min(state["posts"], max_posts))
        repeats = 0
        feed_seen: set[str] = set()
        resumed_cursor = state.get("cursor")  # from an earlier run: the only one that may have expired
        exhausted = stopped_by_update = stopped_by_date = False
        while not state["done"] and (max_posts is None or state["posts"] < max_posts):
            try:
                posts, after, bad = client.fetch_page(tag, state)
            except InstagramError as exc:
                if resumed_cursor is None or state.get("cursor") != resumed_cursor or exc.kind != "http_400":
                    raise
                resumed_cursor = None
                self.note(f"#{tag}: Instagram refused the saved cursor ({exc}); starting over from the newest post")
                state = self._fresh_state(tag, tab, fallback)
                continue
            listed_at = client.clock()
            for exc in bad:
                self._record_bad_post(exc, counts)
            in_feed = [p for p in posts if p.key not in feed_seen]  # new to this feed: not a repeated page
            feed_seen.update(p.key for p in posts)
            if not in_feed and not bad and not after["done"]:
                repeats += 1
                if repeats > REPEATS_ALLOWED:
                    exhausted = True
                    self.note(f"#{tag}: Instagram answered the same page {repeats} times with no new post; the "
                              f"feed ends here (exhausted) after {state['posts']} posts; the next run asks again from there")
                    state = {**state, "done": True, "exhausted": True}
                    break
                client.pause(client.api_endpoint if client.api == "web" else "graphql",
                             client.backoff_delay(repeats), f"#{tag}: a page with no new posts; asking for it again "
                                                       f"({repeats}/{REPEATS_ALLOWED})")
                continue
            repeats = 0
            fresh = [p for p in in_feed if p.key not in counted]  # a post in two tabs counts once
            in_range = [p for p in fresh if self._in_range(p)]
            counts["out_of_range"] += len(fresh) - len(in_range)
            for post in fresh:
                if post not in in_range:
                    log.debug("skipping post %s: taken outside --since/--until", post.shortcode)
            all_known = bool(in_feed) and all(self._known(p) for p in in_feed)
            take = in_range if max_posts is None else in_range[:max_posts - state["posts"]]
            counted.update(p.key for p in take)
            self._store_page(pool, take, tag, counts, bar, listed_at, retry_list)
            if len(take) < len(in_range):
                break  # stopped inside this page: the next run fetches it again
            state = {**after, "pages": state["pages"] + 1, "posts": state["posts"] + len(in_range),
                     "saved_at": time.time(), "retry": retry_list[-RETRY_LIST_MAX:]}
            if not update:
                catalog.set_state(STATE_SOURCE, key, state)
            if update and all_known:
                stopped_by_update = True
                log.info("#%s: every post of this page is in the catalogue; the update stops here", tag)
                break
            if (self.since is not None and after.get("tab") == "recent" and in_feed
                    and all(p.taken_at is not None and p.taken_at < self.since for p in in_feed)):
                stopped_by_date = True
                log.info("#%s: this page is older than --since; the crawl stops here", tag)
                break
        if update and retry_list:
            saved_now = catalog.get_state(STATE_SOURCE, key)
            if saved_now is not None:
                catalog.set_state(STATE_SOURCE, key, {**saved_now, "retry": retry_list[-RETRY_LIST_MAX:]})
        counts["pages"] = state["pages"]
        return {"complete": bool(state["done"]) and not exhausted, "exhausted": exhausted,
                "posts_total": state["posts"], "tab": state.get("tab", tab), "stopped_by_update": stopped_by_update,
                "stopped_by_date": stopped_by_date}

    def _in_range(self, post: Post) -> bool:
        if post.taken_at is None:
            return self.since is None and self.until is None
        return ((self.since is None or post.taken_at >= self.since)
                and (self.until is None or post.taken_at < self.until))

    def _known(self, post: Post) -> bool:
        return _opted_out(post, self.names) or all(f"{post.shortcode}/{n}" in self.seen
                                                   for n in range(len(post.image_urls)))

    def _record_bad_post(self, exc: BadPost, counts: Counter) -> None:
        message = self.client.scrub(str(exc))
        log.warning("skipping a bad post: %s", message)
        counts["bad_posts"] += 1
        self.errors["bad_post"] += 1
        if exc.shortcode:
            record = PhotoRecord(kind=KIND, source_id=f"{exc.shortcode}/0", meta={"shortcode": exc.shortcode})
            self.catalog.reject_source(record, "collect", "bad_post", message)
        else:
            self.catalog.record_error("collect", "bad_post", message, source_kind=KIND)

    def _retry_failed(self, tag: str, retry_list: list[dict], counts: Counter) -> list[dict]:
        """Images whose signed URL expired last time: ask for the post again and download them."""
        left = []
        for item in retry_list:
            source_id = f"{item['shortcode']}/{item['n']}"
            if source_id in self.seen:
                continue
            try:
                post = self.client.media_info(item["pk"], item.get("tab"))
                if post is None or item["n"] >= len(post.image_urls):
                    raise BadDownload("Instagram no longer lists this post", kind="url_expired", retryable=False)
                data, width, height = self.client.download(post.image_urls[item["n"]])
            except (BadDownload, BadPost) as exc:
                if getattr(exc, "retryable", False) or exc.kind in ("http_403", "http_410"):
                    log.info("%s: still no usable URL (%s); the next run tries again", source_id, exc.kind)
                    left.append(item)
                    continue
                record = PhotoRecord(kind=KIND, source_id=source_id, meta={"shortcode": item["shortcode"]})
                self.catalog.reject_source(record, "collect", exc.kind, f"{source_id}: {self.client.scrub(str(exc))}")
                continue
            fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            record = PhotoRecord(kind=KIND, source_id=source_id, meta=post.meta(item["n"], tag, self.client.api, fetched_at))
            _, created = self.catalog.store_photo(record, data, width, height, images.guess_extension(data))
            counts["stored" if created else "duplicates"] += 1
            self.seen.add(source_id)
            log.info("%s: stored on the retry of its expired URL", source_id)
        return left

    def _store_page(self, pool, posts: list[Post], tag: str, counts: Counter, bar, listed_at: float,
                    retry_list: list[dict]) -> None:
        """Download a page's new images concurrently and store them in page order."""
        catalog, client = self.catalog, self.client
        jobs = []
        for post in posts:
            if _opted_out(post, self.names):
                log.info("skipping post %s: its owner or the post is on the opt-out list", post.shortcode)
                counts["opted_out"] += 1
                continue
            for n, url in enumerate(post.image_urls):
                if f"{post.shortcode}/{n}" in self.seen:
                    log.debug("skipping image %s/%d: already in the catalogue (or rejected before)", post.shortcode, n)
                    counts["known"] += 1
                    continue
                jobs.append((post, n, pool.submit(client.download, url, pk=post.media_id, n=n, listed_at=listed_at)))
        fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        done_posts: dict[str, int] = Counter(p.shortcode for p, _, _ in jobs)
        finished = 0
        for post, n, future in jobs:
            record = PhotoRecord(kind=KIND, source_id=f"{post.shortcode}/{n}",
                                 meta=post.meta(n, tag, client.api, fetched_at))
            try:
                data, width, height = future.result()
            except BadDownload as exc:
                message = f"{record.source_id}: {client.scrub(str(exc))}"
                if exc.retryable:
                    log.warning("image %s failed, a later run tries again: %s", record.source_id, message)
                    catalog.record_error("collect", exc.kind, message, source_kind=KIND, source_id=record.source_id)
                    if post.media_id:
                        retry_list.append({"shortcode": post.shortcode, "pk": post.media_id, "n": n, "tab": post.tab})
                else:
                    log.warning("rejected image %s: %s", record.source_id, message)
                    catalog.reject_source(record, "collect", exc.kind, message)
                self.errors[exc.kind] += 1
            except InstagramError as exc:
                if isinstance(exc, (LoginRequired, CheckpointRequired)):
                    raise
                # Kept failing (network, 5xx, 429): recorded, and the next run tries again.
                log.warning("image %s kept failing, a later run tries again: %s", record.source_id, exc)
                catalog.record_error("collect", exc.kind, f"{record.source_id}: {client.scrub(str(exc))}",
                                     source_kind=KIND, source_id=record.source_id)
                self.errors[exc.kind] += 1
            else:
                _, created = catalog.store_photo(record, data, width, height, images.guess_extension(data))
                counts["stored" if created else "duplicates"] += 1
                self.seen.add(record.source_id)
            done_posts[post.shortcode] -= 1
            if done_posts[post.shortcode] == 0:
                finished += 1
                bar.update(1)
                self._postfix(bar, counts)
        counts["posts"] += len(posts)
        bar.update(len(posts) - finished)
        self._postfix(bar, counts)

    def _postfix(self, bar, counts: Counter) -> None:
        if bar.disable:
            return
        rate = counts["stored"] / max(time.perf_counter() - self.t0, 1e-9)
        postfix = {"photos": counts["stored"], "photos/s": f"{rate:.1f}"}
        if self.errors:
            postfix["errors"] = ",".join(f"{k}:{v}" for k, v in sorted(self.errors.items()))
        bar.set_postfix(postfix, refresh=False)
