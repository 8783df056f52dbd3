"""The crawl: pages of a hashtag into the catalogue, resumable; opt-out lists and forget."""

from __future__ import annotations

import concurrent.futures
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ... import images
from ...errors import BadDownload, IffseError, InstagramError, SourceError
from ...records import PhotoRecord
from .client import DEFAULT_BASE_URL, InstagramClient
from .cookies import SessionCookies
from .posts import Post

KIND = "instagram"
STATE_SOURCE = "instagram"
OPTOUT_SOURCE = "instagram-optout"


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
        :func:`~iffse_lib.testing.fake_instagram.serve` to work offline.
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
