"""Today's web protocol and the ways the real server fails, against the imitation on 127.0.0.1.

Rate windows are off and backoffs tiny, so nothing here waits long; where the length of a wait
matters, the limiter runs on a fake clock.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from iffse_lib.catalog import Catalog
from iffse_lib.errors import BadPost
from iffse_lib.sources import instagram
from iffse_lib.sources.instagram import InstagramClient, InstagramError, LoginRequired, collect_hashtag
from iffse_lib.sources.instagram.cookies import SessionCookies, scrub
from iffse_lib.sources.ratelimit import RateLimiter
from iffse_lib.testing.fake_instagram import FAKE_COOKIES, FakeInstagram, Fault

FAST = {"backoff": 0.01, "backoff_max": 0.05, "soft_block_wait": 0.05, "timeout": 2.0}


@pytest.fixture(scope="module")
def face_images(faces_dir) -> list[Path]:
    return sorted((faces_dir / "people").rglob("*.jpg"), key=lambda p: p.stat().st_size)[:4]


@pytest.fixture(scope="module")
def fixtures(faces_dir) -> Path:
    return faces_dir.parents[1] / "instagram"


def crawl(cat, server, **kwargs):
    options = {**FAST, "limiter": RateLimiter({}, jitter={}), "progress": False, "workers": 4,
               "cookies": FAKE_COOKIES, **kwargs}
    return collect_hashtag(cat, server.tag, api=options.pop("api", "web"), base_url=server.url, **options)


def stored(cat) -> dict[str, dict]:
    return {r["source_id"]: json.loads(r["meta"]) for r in cat.query("SELECT source_id, meta FROM photos")}


# -- the protocol ---------------------------------------------------------------------------
@pytest.mark.parametrize("tab", ["recent", "top"])
def test_three_pages_of_a_tab_by_web_info_then_sections(tmp_path, face_images, tab):
    with FakeInstagram(30 if tab == "recent" else 90, page_size=10, images=face_images) as server, \
            Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server, tab=tab)
        feed = server.feed(tab)
        assert len(feed) == 30
        assert set(stored(cat)) == set(server.expected_images("web", tab=tab))
        assert out["posts"] == 30 and out["tags"]["selfie"]["complete"] and out["tags"]["selfie"]["pages"] == 3
        web = server.log("web")
        assert [(r.method, r.path) for r in web] == [("GET", "/api/v1/tags/web_info/")] + \
            [("POST", "/api/v1/tags/selfie/sections/")] * 2
        assert web[0].query == {"tag_name": "selfie"}
        for n, r in enumerate(web[1:], start=1):
            assert r.form["tab"] == tab and r.form["surface"] == "grid" and r.form["include_persistent"] == "false"
            assert r.form["page"] == str(n) and json.loads(r.form["next_media_ids"]) and r.form["max_id"]
            # The CSRF header is the csrftoken that web_info renewed with Set-Cookie, not the exported one.
            assert r.csrf == server.csrftoken != FAKE_COOKIES["csrftoken"]
        # Every tab's post is stored with the metadata users expect.
        got = stored(cat)
        metas = [m for m in got.values() if m["image_number"] == 0]
        assert {m["tab"] for m in metas} == {tab}
        post = next(p for p in feed if p.caption and p.index % 4 == 1)
        meta = got[f"{post.shortcode}/0"]
        assert meta["like_count"] == post.index * 3 % 97 and meta["comment_count"] == post.index % 5
        assert meta["hashtags"] == sorted({"selfie", f"fake{post.index % 4}"})
        assert meta["mentions"] == [post.username.replace("user", "friend")]
        assert meta["location"] == f"Fake Place {post.index % 5}"
        assert meta["original_width"] == meta["original_height"] == 1080
        assert meta["accessibility_caption"].startswith("Photo by") and meta["product_type"] in ("feed", "clips",
                                                                                                "carousel_container")
        photos = cat.photos()
        for column in ("like_count", "comment_count", "hashtags", "mentions", "location", "accessibility_caption",
                       "product_type", "tab", "shortcode", "taken_at", "original_width", "original_height"):
            assert column in photos.columns, column
        row = photos[photos.source_id == f"{post.shortcode}/0"].iloc[0]
        assert row.like_count == meta["like_count"] and row.tab == tab and "selfie" in row.hashtags


def test_both_tabs_count_a_post_listed_in_both_once(tmp_path, face_images):
    with FakeInstagram(24, page_size=6, images=face_images) as server, Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server, tab="both")
        assert set(stored(cat)) == set(server.expected_images("web"))
        recent, top = out["tags"]["selfie (recent)"], out["tags"]["selfie (top)"]
        assert recent["posts"] == 24 and top["posts"] == 0  # every top post was counted in recent already
        assert recent["complete"] and top["complete"]
        assert {r.form.get("tab") for r in server.log("web") if r.method == "POST"} == {"recent", "top"}


def test_top_only_payloads_fall_back_to_the_top_tab(tmp_path, face_images):
    with FakeInstagram(30, page_size=5, images=face_images, top_only=True) as server, Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server)
        assert set(stored(cat)) == set(server.expected_images("web", tab="top"))
        assert out["tags"]["selfie"]["tab"] == "top" and out["tags"]["selfie"]["complete"]
        assert all(r.form["tab"] == "top" for r in server.log("web") if r.method == "POST")


def test_the_imitation_answers_like_the_real_server(tmp_path):
    with FakeInstagram(30) as server:
        cookie = "; ".join(f"{k}={v}" for k, v in FAKE_COOKIES.items())
        old = requests.get(f"{server.url}/explore/tags/selfie/", params={"__a": 1, "__d": "dis", "max_id": "x"},
                           headers={"Cookie": cookie})
        assert old.status_code == 404
        anonymous = requests.get(f"{server.url}/api/v1/tags/web_info/", params={"tag_name": "selfie"},
                                 allow_redirects=False)
        assert anonymous.status_code == 302 and "/accounts/login/" in anonymous.headers["Location"]
        wrong = requests.get(f"{server.url}/api/v1/tags/web_info/", params={"tag_name": "selfie"},
                             headers={"Cookie": "sessionid=somebody-else"})
        assert wrong.status_code == 403 and wrong.json()["message"] == "login_required"
        info = requests.get(f"{server.url}/api/v1/tags/web_info/", params={"tag_name": "selfie"},
                            headers={"Cookie": cookie})
        assert "csrftoken=" in info.headers["Set-Cookie"]
        cursor = info.json()["data"]["recent"]["next_max_id"]
        form = {"tab": "recent", "max_id": cursor, "page": 1, "next_media_ids": "[]", "include_persistent": "false",
                "surface": "grid"}
        no_csrf = requests.post(f"{server.url}/api/v1/tags/selfie/sections/", data=form, headers={"Cookie": cookie})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["message"]
        ok = requests.post(f"{server.url}/api/v1/tags/selfie/sections/", data=form,
                           headers={"Cookie": cookie, "X-CSRFToken": FAKE_COOKIES["csrftoken"]})
        assert ok.status_code == 200
        url = info.json()["data"]["recent"]["sections"][0]["layout_content"]["medias"][0]["media"][
            "image_versions2"]["candidates"][0]["url"]
        assert requests.get(url).status_code == 200
        assert requests.get(url.replace("&oe=", "&oe=1")).status_code == 403  # a tampered signature
        server.clock = lambda: time.time() + 7200  # two hours later the URL has expired
        assert requests.get(url).status_code == 403


def test_feed_parser_reads_fill_items_and_clips_and_reports_odd_sections(fixtures):
    web = json.loads((fixtures / "current_web_info.json").read_text())
    recent = web["data"]["recent"]
    media = recent["sections"][0]["layout_content"]["medias"]
    moved = {"sections": [{"layout_content": {"fill_items": media[:1],
                                              "one_by_two_item": {"clips": {"items": media[1:2]}}}}],
             "more_available": True, "next_max_id": "abc", "next_page": 2, "next_media_ids": [1, 2]}
    page = instagram.parse_feed(moved, "recent")
    assert [p.shortcode for p in page.posts] == [m["media"]["code"] for m in media[:2]]
    assert page.more_available and page.next_max_id == "abc" and page.next_media_ids == [1, 2]
    assert page.posts[0].like_count == media[0]["media"]["like_count"] and page.posts[0].tab == "recent"
    odd = instagram.parse_feed({"sections": {"not": "a list"}, "more_available": True, "next_max_id": "x"})
    assert odd.posts == [] and len(odd.bad) == 1 and "not a list" in str(odd.bad[0])
    bad = dict(media[0]["media"], taken_at="yesterday")
    with pytest.raises(BadPost, match="taken_at") as err:
        instagram.post_from_media(bad)
    assert err.value.shortcode == bad["code"]


# -- faults -------------------------------------------------------------------------------
def test_a_repeated_page_is_asked_again_and_counted_once(tmp_path, face_images):
    fault = Fault("repeat", endpoint="sections", count=1, after=1)
    with FakeInstagram(30, page_size=10, images=face_images, faults=[fault]) as server, Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server, max_posts=30)
        assert fault.count == 0
        assert out["posts"] == 30 and out["tags"]["selfie"]["complete"] and not out["tags"]["selfie"]["exhausted"]
        assert set(stored(cat)) == set(server.expected_images("web"))
        posts = [r for r in server.log("web") if r.method == "POST"]
        assert len(posts) == 3 and posts[1].form == posts[2].form  # the repeated page, asked again


def test_a_server_that_keeps_repeating_ends_the_feed_as_exhausted(tmp_path, face_images):
    fault = Fault("repeat", endpoint="sections", count=None, after=1)
    with FakeInstagram(50, page_size=10, images=face_images, faults=[fault]) as server, Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server, max_posts=50)
        tag = out["tags"]["selfie"]
        assert tag["exhausted"] and not tag["complete"] and tag["posts_total"] == 20
        assert out["posts"] == 20  # never the same post twice towards --max-posts
        assert len([r for r in server.log("web") if r.method == "POST"]) == 1 + 1 + 2
        assert any("exhausted" in note for note in out["notes"])
        assert cat.get_state("instagram", "web:selfie")["done"] is False  # the next run asks again


def test_an_expired_image_url_is_refreshed_once(tmp_path, face_images):
    with FakeInstagram(12, page_size=6, images=face_images, expired_urls={"FkPost00002", "FkPost00004"}) as server, \
            Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server)
        assert set(stored(cat)) == set(server.expected_images("web")) and out["errors"] == {}
        # Asked once for each image of the two posts (post 4 is a carousel), and for nothing else.
        info = [r.path for r in server.log("web") if "/media/" in r.path]
        two = [server.posts[2], server.posts[4]]
        assert set(info) == {f"/api/v1/media/{p.media_id}/info/" for p in two}
        assert len(info) == sum(len(p.image_keys) for p in two) == 1 + len(server.posts[4].image_keys)


def test_an_image_url_that_stays_expired_is_retried_by_the_next_run(tmp_path, face_images):
    with FakeInstagram(12, page_size=6, images=face_images, always_expired={"FkPost00003"}) as server, \
            Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server)
        assert out["errors"] == {"url_expired": 1}
        assert set(stored(cat)) == set(server.expected_images("web")) - {"FkPost00003/0"}
        errors = cat.errors()
        assert list(errors["source_id"]) == ["FkPost00003/0"] and "later run" in errors["message"][0]
        assert not cat.has_source("instagram", "FkPost00003/0")  # an error, not a rejection
        server.always_expired.clear()
        server.expired_urls.clear()
        again = crawl(cat, server)
        assert again["stored"] == 1 and "FkPost00003/0" in stored(cat)
        assert cat.get_state("instagram", "web:selfie")["retry"] == []


def test_a_locked_session_stops_at_once_with_login_required(tmp_path, face_images):
    with FakeInstagram(30, page_size=6, images=face_images, faults=[Fault("locked", count=None, after=1)]) as server, \
            Catalog(tmp_path / "data") as cat:
        t0 = time.monotonic()
        with pytest.raises(LoginRequired, match="export the cookies again") as err:
            crawl(cat, server, soft_block_wait=300.0, backoff=5.0)
        assert time.monotonic() - t0 < 3.0
        assert len(server.log("web")) == 2  # no retry of a refused session
        assert all(v not in str(err.value) for v in FAKE_COOKIES.values())


def test_429_waits_are_logged_with_reason_and_length(tmp_path, face_images, caplog):
    fault = Fault("429", endpoint="sections", count=1, retry_after=0.3)
    with FakeInstagram(12, page_size=6, images=face_images, faults=[fault]) as server, Catalog(tmp_path / "data") as cat, \
            caplog.at_level(logging.INFO, logger="iffse_lib.sources.instagram"):
        crawl(cat, server)
    waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert any("0.3 s" in m and "429" in m for m in waits), waits
    assert any("retry 1/" in r.getMessage() for r in caplog.records)


class FakeClock:
    def __init__(self):
        self.t = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.mark.parametrize("retry_after", ["-5", "nan", "0", "Wed, 21 Oct 2015 07:28:00 GMT", "inf"])
def test_an_odd_retry_after_never_lets_requests_through_unpaced(face_images, retry_after):
    clock = FakeClock()
    limiter = RateLimiter(jitter={}, clock=clock, sleep=clock.sleep)
    fault = Fault("429", endpoint="web_info", count=6, retry_after=retry_after)
    with FakeInstagram(6, images=face_images, faults=[fault]) as server:
        client = InstagramClient("web", base_url=server.url, cookies=FAKE_COOKIES, limiter=limiter, backoff=0.01,
                                 max_retries=5)
        with pytest.raises(instagram.RateLimited):
            client.fetch_page("selfie", {"cursor": None})
        assert len(server.log("web")) == 6
    # Six requests, five waits between them: each at least instaloader's 6 s margin.
    assert len(clock.sleeps) == 5 and min(clock.sleeps) >= 6.0


def test_a_429_without_retry_after_waits_for_the_window_plus_instaloaders_margin(face_images):
    clock = FakeClock()
    limiter = RateLimiter(jitter={}, clock=clock, sleep=clock.sleep)
    with FakeInstagram(6, images=face_images, faults=[Fault("429", endpoint="web_info", retry_after=None)]) as server:
        client = InstagramClient("web", base_url=server.url, cookies=FAKE_COOKIES, limiter=limiter, backoff=0.01)
        client.fetch_page("selfie", {"cursor": None})
    # One request in the 75-per-660-s window: it leaves the window 660 s later, plus 6 s.
    assert clock.sleeps == [pytest.approx(666.0)]


# -- safe downloads -----------------------------------------------------------------------
def test_images_only_from_allowed_hosts_and_schemes(tmp_path, face_images):
    with FakeInstagram(4, images=face_images) as other:
        elsewhere = other._image_url("FkPost00001_0")
        with FakeInstagram(12, page_size=6, images=face_images, faults=[
                Fault("redirect", endpoint="image", count=1, after=4, location=elsewhere)],
                image_urls={"FkPost00001": "file:///etc/passwd", "FkPost00002": elsewhere,
                            "FkPost00003": "ftp://127.0.0.1/x.jpg"}) as server, Catalog(tmp_path / "data") as cat:
            out = crawl(cat, server, workers=1)
            assert out["errors"] == {"bad_url": 2, "bad_host": 2}
            assert len(stored(cat)) == len(server.expected_images("web")) - 4
            assert other.log() == []  # nothing was fetched from the host that is not allowed
            rejected = cat.errors()
            assert set(rejected["kind"]) == {"bad_url", "bad_host"}
            # --image-host adds a host: the other server's images are fetched then.
            crawl(cat, server, restart=True, image_hosts=[other.url])
            assert len(other.log("image")) == 0  # rejected sources are not tried again
        with Catalog(tmp_path / "data2") as cat2, FakeInstagram(6, images=face_images,
                                                                image_urls={"FkPost00001": elsewhere}) as server2:
            crawl(cat2, server2, image_hosts=[other.url])
            assert "FkPost00001/0" in stored(cat2) and len(other.log("image")) == 1


def test_api_answers_are_capped_in_size(tmp_path, face_images):
    with FakeInstagram(6, images=face_images, faults=[Fault("huge", size=3_000_000)]) as server, \
            Catalog(tmp_path / "data") as cat:
        with pytest.raises(InstagramError, match="too large") as err:
            crawl(cat, server, max_api_bytes=1_000_000)
        assert err.value.kind == "too_large"


def test_posts_with_odd_fields_are_recorded_and_the_crawl_goes_on(tmp_path, face_images):
    odd = {"FkPost00001": {"taken_at": 1e20}, "FkPost00002": {"taken_at": "yesterday"},
           "FkPost00007": {"original_width": "wide"}}
    with FakeInstagram(12, page_size=6, images=face_images, odd_fields=odd) as server, Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server)
        assert out["errors"] == {"bad_post": 3} and out["bad_posts"] == 3
        assert set(stored(cat)) == set(server.expected_images("web")) - {f"{c}/0" for c in odd}
        errors = cat.errors()
        assert sorted(errors["source_id"]) == sorted(f"{c}/0" for c in odd)
        assert all(c in m for c, m in zip(sorted(odd), sorted(errors["message"])))


def test_cookie_values_are_scrubbed_from_server_messages(tmp_path, face_images, caplog):
    faults = [Fault("echo_cookie", endpoint="sections"), Fault("500", endpoint="sections", count=2)]
    with FakeInstagram(12, page_size=6, images=face_images, faults=faults) as server, \
            Catalog(tmp_path / "data") as cat, caplog.at_level(logging.DEBUG):
        with pytest.raises(InstagramError) as err:
            crawl(cat, server)
        message = str(err.value)
        assert "bad request" in message and "<hidden>" in message
        secrets = list(FAKE_COOKIES.values()) + server.issued_cookies
        assert server.issued_cookies  # the renewed csrftoken was echoed too
        assert all(v not in message and v not in caplog.text for v in secrets)
    assert scrub("Cookie: a=b\nsessionid=XYZ123; csrftoken=abc123") == "Cookie: <hidden>\nsessionid=<hidden>; csrftoken=<hidden>"
    with pytest.raises(instagram.SourceError, match="line break") as err:
        SessionCookies({"sessionid": "abc\r\nX-Evil: 1"})
    assert "X-Evil" not in str(err.value)


# -- incremental crawls -------------------------------------------------------------------
def test_update_since_until_and_old_cursors(tmp_path, face_images):
    with FakeInstagram(40, page_size=10, images=face_images) as server, Catalog(tmp_path / "data") as cat:
        crawl(cat, server, max_posts=20)
        before = len(server.log("web"))
        # --update walks from the newest page and stops at the first one it already has.
        out = crawl(cat, server, update=True)
        assert len(server.log("web")) - before == 1 and out["stored"] == 0
        assert out["tags"]["selfie"]["stopped_by_update"]
        assert cat.get_state("instagram", "web:selfie")["posts"] == 20  # the saved crawl is untouched

        # A saved cursor older than 29 days is not resumed.
        state = cat.get_state("instagram", "web:selfie")
        cat.set_state("instagram", "web:selfie", {**state, "saved_at": time.time() - 30 * 86400})
        before = len(server.log("web"))
        out = crawl(cat, server)
        assert server.log("web")[before].path == "/api/v1/tags/web_info/"
        assert any("30 days old" in n and "starting over" in n for n in out["notes"])
        assert set(stored(cat)) == set(server.expected_images("web"))

    with FakeInstagram(40, page_size=10, images=face_images) as server, Catalog(tmp_path / "dates") as cat:
        since = datetime.fromtimestamp(server.posts[14].taken_at, timezone.utc)
        until = datetime.fromtimestamp(server.posts[4].taken_at, timezone.utc)
        out = crawl(cat, server, since=since, until=until)
        codes = {m["shortcode"] for m in stored(cat).values()}
        assert codes == {p.shortcode for p in server.posts[5:15]}
        assert out["tags"]["selfie"]["stopped_by_date"] and len(server.log("web")) == 3


def test_a_cursor_the_server_no_longer_takes_starts_the_crawl_over(tmp_path, face_images):
    now = [time.time()]
    with FakeInstagram(30, page_size=10, images=face_images, cursor_ttl=3600, clock=lambda: now[0]) as server, \
            Catalog(tmp_path / "data") as cat:
        crawl(cat, server, max_posts=10)
        now[0] += 2 * 3600
        out = crawl(cat, server)
        assert any("refused the saved cursor" in n for n in out["notes"])
        assert set(stored(cat)) == set(server.expected_images("web"))


# -- the 2017 flow ------------------------------------------------------------------------
@pytest.mark.parametrize("shape,bundle", [("2017", "en_US"), ("graphql", "consumer")])
def test_legacy_flow_sends_what_2017_instagram_took(tmp_path, face_images, shape, bundle):
    with FakeInstagram(20, page_size=6, legacy_shape=shape, bundle=bundle, images=face_images) as server, \
            Catalog(tmp_path / "data") as cat:
        crawl(cat, server, api="legacy", cookies=None)
        assert set(stored(cat)) == set(server.expected_images("legacy"))
        pages = [r.path for r in server.log("page")]
        assert any(("ConsumerCommons.js" if bundle == "consumer" else "en_US_Commons.js") in p for p in pages)
        for r in server.log("graphql"):
            if shape == "2017":
                assert set(r.query) == {"query_id", "tag_name", "first", "after"} and r.query["first"] == "6"
            else:
                assert set(r.query) == {"query_id", "variables"} and json.loads(r.query["variables"])["after"]
            assert r.query["query_id"] == "17875800862117404"  # from the bundle
    # The seed's own query_id, given by hand: no bundle is fetched.
    with FakeInstagram(12, page_size=6, legacy_shape=shape, images=face_images) as server, \
            Catalog(tmp_path / "seed") as cat:
        crawl(cat, server, api="legacy", cookies=None, query_id="17882293912014529")
        assert set(stored(cat)) == set(server.expected_images("legacy"))
        assert {r.query["query_id"] for r in server.log("graphql")} == {"17882293912014529"}
        assert not any("Commons" in r.path for r in server.log("page"))


def test_legacy_graphql_error_seeds_again_from_a_fresh_tag_page(tmp_path, face_images):
    fault = Fault("500", endpoint="graphql", count=3, after=1)
    with FakeInstagram(30, page_size=6, images=face_images, faults=[fault]) as server, Catalog(tmp_path / "data") as cat:
        crawl(cat, server, api="legacy", cookies=None, max_retries=2)
        assert fault.count == 0
        assert set(stored(cat)) == set(server.expected_images("legacy"))
        tag_pages = [r for r in server.log("page") if r.path == "/explore/tags/selfie/"]
        assert len(tag_pages) == 2
    assert instagram.find_query_id('c="111",l="TAG_MEDIA_UPDATED";byTagName.get(t).pagination},queryId:"222",'
                                   'queryParams') == "111"  # IFFSE's first pattern first
