"""Photos of Instagram hashtags, page after page, into the catalogue.

Two API generations (``api=``):

``legacy``  what IFFSE did in 2017: ``GET /explore/tags/<tag>/``, parse ``window._sharedData``
            (the early-2017 ``TagPage[0].tag.media.nodes`` or the late-2017
            ``TagPage[0].graphql.hashtag`` shape), find the hashtag ``query_id`` in the
            ``en_US_Commons.js`` or ``ConsumerCommons.js`` bundle the page references (IFFSE's
            patterns, in its order), then ``GET /graphql/query/?query_id=…&tag_name=…&first=N&after=…``
            (early 2017) or ``?query_id=…&variables={…}`` (late 2017) until ``has_next_page`` is
            false; a query that keeps failing seeds the crawl again from a fresh tag page. Instagram
            retired these endpoints in 2018-2020; :mod:`iffse_lib.testing.fake_instagram` serves them.
``web``     today's web app: ``GET /api/v1/tags/web_info/?tag_name=…`` (``data.recent`` and
            ``data.top``), then ``POST /api/v1/tags/<tag>/sections/`` with ``tab``, ``max_id``,
            ``page``, ``next_media_ids``, ``include_persistent`` and ``surface=grid`` while
            ``more_available``, with the web app's headers, a logged-in session's cookies and
            ``X-CSRFToken``; posts from ``sections[].layout_content`` (``medias``, ``fill_items``,
            ``one_by_two_item.clips.items``).

The modules: :mod:`.cookies` (the session, kept in memory; scrubbing secrets from messages),
:mod:`.posts` (parsers), :mod:`.client` (HTTP: rate limits, retries, safe downloads) and
:mod:`.crawl` (pages into the catalogue, resumable; opt-out and :func:`forget`).

Each post's images are stored with ``kind="instagram"`` and ``source_id="<shortcode>/<n>"``
(``n`` the image number in a carousel, 0 otherwise; a video gives its cover image). Image URLs
are signed and expire, so the shortcode is the key: an image whose source id the catalogue
knows is not downloaded again, and identical bytes are stored once. An image whose signed URL
expired is refreshed once from ``/api/v1/media/<pk>/info/``.

Politeness: every request waits for a :class:`~iffse_lib.sources.ratelimit.RateLimiter` (sliding
windows per endpoint and a random pause, instaloader's defaults), has a timeout, and is retried a
bounded number of times with exponential backoff after 5xx answers, timeouts, cut connections,
HTML where JSON was expected and ``"status": "fail"``; ``429`` waits for ``Retry-After`` (or, when
it is missing or makes no sense, for the window to free plus instaloader's margin), ``401``
"Please wait a few minutes" waits ``soft_block_wait`` unless it says ``require_login``. A redirect
to the login page, ``login_required`` or a 401 with ``require_login`` raises :class:`LoginRequired`;
``checkpoint_required``/``challenge_required`` raise :class:`CheckpointRequired`. Every wait, retry
and skipped post is logged (``logging.getLogger("iffse_lib.sources.instagram")``).

Session cookies (:class:`SessionCookies`) are secrets: they are sent only to ``base_url``, never
to an image host, and never appear in the catalogue, in messages or in reprs.
"""

from __future__ import annotations

from ...errors import (BadDownload, CheckpointRequired, IffseError, InstagramError, LoginRequired, QueryIdNotFound,
                       RateLimited, SourceError)
from .client import (API_GENERATIONS, ASBD_ID, DEFAULT_BASE_URL, DEFAULT_PAGE_SIZE, DEFAULT_TIMEOUT,
                     DEFAULT_USER_AGENT, WEB_APP_ID, InstagramClient)
from .cookies import SessionCookies
from .crawl import (KIND, OPTOUT_SOURCE, STATE_SOURCE, collect_hashtag, forget, forgotten_names, load_opt_out,
                    state_key)
from .posts import (FeedPage, Post, find_query_id, parse_feed, parse_shared_data, parse_tag_page, post_from_media,
                    post_from_node, posts_from_feed, url_expiry)

__all__ = ["API_GENERATIONS", "ASBD_ID", "BadDownload", "CheckpointRequired", "DEFAULT_BASE_URL", "DEFAULT_PAGE_SIZE",
           "DEFAULT_TIMEOUT", "DEFAULT_USER_AGENT", "IffseError", "InstagramClient", "InstagramError", "KIND",
           "LoginRequired", "OPTOUT_SOURCE", "Post", "QueryIdNotFound", "RateLimited", "STATE_SOURCE",
           "SessionCookies", "SourceError", "WEB_APP_ID", "collect_hashtag", "find_query_id", "forget",
           "forgotten_names", "load_opt_out", "FeedPage", "parse_feed", "url_expiry", "parse_shared_data", "parse_tag_page", "post_from_media",
           "post_from_node", "posts_from_feed", "state_key"]
