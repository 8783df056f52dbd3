"""RateLimiter with a fake clock: no test here waits for real."""

from __future__ import annotations

import random
import threading

import pytest

from iffse_lib.sources.ratelimit import DEFAULT_WINDOWS, RateLimiter, jitter_with_mean, parse_windows


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def test_eleven_requests_in_a_ten_per_minute_window_wait_once_for_the_oldest_to_leave():
    clock = FakeClock()
    limiter = RateLimiter({"api": [(10, 60.0)]}, jitter={}, clock=clock, sleep=clock.sleep)
    for _ in range(11):
        limiter.wait("api")
        clock.t += 1.0  # each request takes a second
    # Requests 1-10 went at t=1000..1009; the 11th (t=1010) waits until 1000 + 60.
    assert clock.sleeps == [pytest.approx(50.0)]
    # At t=1061 the requests of t=1000 and 1001 have left the window: the 12th goes at once,
    # and a 13th would have to wait for the one of t=1002 to leave.
    limiter.wait("api")
    assert clock.sleeps == [pytest.approx(50.0)]
    assert limiter.query_waittime("api", clock.t) == pytest.approx(1002 + 60 - clock.t) == pytest.approx(1.0)


def test_several_windows_and_endpoints_are_independent():
    clock = FakeClock()
    limiter = RateLimiter({"a": [(2, 1.0), (3, 10.0)], "b": [(1, 5.0)]}, jitter={}, clock=clock, sleep=clock.sleep)
    waits = [limiter.wait("a") for _ in range(4)]
    # 2 per second: the third waits 1 s; 3 per 10 s: the fourth waits until t0 + 10.
    assert waits == [0.0, 0.0, pytest.approx(1.0), pytest.approx(9.0)]
    assert limiter.wait("b") == 0.0  # another endpoint is not held up by "a"
    assert limiter.wait("c") == 0.0  # an endpoint without windows is not limited
    assert limiter.wait("b") == pytest.approx(5.0)


def test_hold_delays_the_next_request_until_the_given_time():
    clock = FakeClock()
    limiter = RateLimiter({"api": [(100, 60.0)]}, jitter={}, clock=clock, sleep=clock.sleep)
    limiter.wait("api")
    limiter.hold("api", clock.t + 7.5)  # e.g. Retry-After: 7.5
    assert limiter.wait("api") == pytest.approx(7.5)
    assert limiter.wait("api") == 0.0


def test_jitter_is_added_and_bounded():
    clock = FakeClock()
    limiter = RateLimiter({"api": [(1000, 60.0)]}, jitter={"api": jitter_with_mean(1.7)}, clock=clock,
                          sleep=clock.sleep, rng=random.Random(0))
    waits = [limiter.wait("api") for _ in range(300)]
    assert all(0 < w <= 15.0 for w in waits)
    assert 1.2 < sum(waits) / len(waits) < 2.2
    assert jitter_with_mean(0)(random.Random(0)) == 0.0


def test_reservations_from_many_threads_never_overrun_the_window():
    clock = FakeClock()
    lock = threading.Lock()
    limiter = RateLimiter({"img": [(5, 2.0)]}, jitter={}, clock=clock, sleep=lambda s: None)
    times = []

    def worker():
        for _ in range(10):
            with lock:
                now = clock.t
            delay = limiter.wait("img")
            times.append(now + delay)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times.sort()
    assert len(times) == 40
    # The clock never moves, so the 40 requests must be spread over 8 windows of 2 s.
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 2.0 - 1e-9
    assert times[-1] - times[0] == pytest.approx(14.0)


def test_parse_windows():
    windows = parse_windows(["graphql=5/1.5", "image=2/1", "image=10/60"])
    assert windows["graphql"] == ((5, 1.5),)
    assert windows["image"] == ((2, 1.0), (10, 60.0))
    assert windows["web"] == DEFAULT_WINDOWS["web"]
    with pytest.raises(ValueError, match="ENDPOINT=N/SECONDS"):
        parse_windows(["graphql:5"])
    with pytest.raises(ValueError):
        RateLimiter({"x": [(0, 1.0)]})


def test_default_windows_are_instaloaders():
    from iffse_lib.sources.ratelimit import RETRY_MARGIN

    assert DEFAULT_WINDOWS["page"] == DEFAULT_WINDOWS["web"] == ((75, 660.0),)  # "other" www requests
    assert DEFAULT_WINDOWS["graphql"] == ((200, 660.0), (275, 600.0))  # per query, and all together
    assert DEFAULT_WINDOWS["iphone"] == ((199, 1800.0),)  # i.instagram.com
    assert RETRY_MARGIN == {"iphone": 18.0, "default": 6.0}
    clock = FakeClock()
    limiter = RateLimiter(jitter={}, clock=clock, sleep=clock.sleep)
    waits = [limiter.wait("graphql") for _ in range(201)]
    # With one query, 200 per 11 min binds before 275 per 10 min: the 201st waits for the first to leave.
    assert waits[:200] == [0.0] * 200 and waits[200] == pytest.approx(660.0)


def test_hold_refuses_nan():
    limiter = RateLimiter({"api": [(1, 1.0)]}, jitter={})
    with pytest.raises(ValueError, match="NaN"):
        limiter.hold("api", float("nan"))
