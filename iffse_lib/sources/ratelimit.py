"""Sliding-window rate limits per endpoint, with jitter, for polite crawling.

A :class:`RateLimiter` holds, for each endpoint name, one or more windows ``(n, seconds)``: no more
than ``n`` requests in any ``seconds``-long stretch of time. :meth:`RateLimiter.wait` is called
before every request; it reserves the earliest moment at which the request fits every window of
its endpoint, sleeps until then (plus a random jitter, if configured) and returns how long it
slept. Reservations are made under a lock, so threads that share a limiter never overrun it
together. :meth:`RateLimiter.hold` makes an endpoint wait until a given moment (``Retry-After``).

The defaults follow instaloader's ``RateController`` (``instaloader/instaloadercontext.py``),
which Instagram tolerated for years:

==========  ============================  ======================================================
endpoint    default windows               what it covers
==========  ============================  ======================================================
``page``    75 per 11 min                 HTML pages and JavaScript bundles (legacy tag page);
                                          instaloader's "other" www requests
``web``     75 per 11 min                 ``www.instagram.com/api/v1/…`` JSON (today's web API):
                                          also non-GraphQL www requests
``graphql`` 200 per 11 min and            ``/graphql/query/`` (legacy pagination): 200 per query
            275 per 10 min                hash, 275 for all GraphQL together (iffse sends one query)
``iphone``  199 per 30 min                ``i.instagram.com/api/v1/…`` (the app's API)
``image``   600 per 1 min                 image files from the CDN (instaloader does not limit
                                          these; iffse keeps them under 10 per second)
==========  ============================  ======================================================

After a 429 without a usable ``Retry-After`` the client waits until the oldest request leaves
the fullest window, plus :data:`RETRY_MARGIN` (instaloader's +6 s, +18 s for ``iphone``).

Every API request (not image) is also preceded by a random pause ``min(expovariate(0.6), 15)``
seconds long (mean 1.7 s), as instaloader does, so that requests do not arrive like clockwork.

``clock`` and ``sleep`` are arguments, so tests drive the limiter with a fake clock and never wait.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from typing import Callable, Mapping, Sequence

Window = tuple[int, float]

#: (requests, seconds) windows per endpoint; see the module docstring.
DEFAULT_WINDOWS: dict[str, tuple[Window, ...]] = {
    "page": ((75, 11 * 60.0),),
    "web": ((75, 11 * 60.0),),
    "graphql": ((200, 11 * 60.0), (275, 10 * 60.0)),
    "iphone": ((199, 30 * 60.0),),
    "image": ((600, 60.0),),
}
#: Seconds added after a window frees when a 429 came without a usable Retry-After (instaloader).
RETRY_MARGIN: dict[str, float] = {"iphone": 18.0, "default": 6.0}


def instaloader_jitter(rng: random.Random) -> float:
    """instaloader's pause before each request: ``min(expovariate(0.6), 15)`` seconds."""
    return min(rng.expovariate(0.6), 15.0)


DEFAULT_JITTER: dict[str, Callable[[random.Random], float]] = {
    "page": instaloader_jitter,
    "graphql": instaloader_jitter,
    "web": instaloader_jitter,
    "iphone": instaloader_jitter,
}


def jitter_with_mean(mean: float) -> Callable[[random.Random], float]:
    """A pause of ``min(expovariate(1 / mean), 15)`` seconds (0 when ``mean`` is 0)."""
    if mean < 0:
        raise ValueError("the mean jitter must be >= 0 seconds")
    return (lambda rng: min(rng.expovariate(1.0 / mean), 15.0)) if mean > 0 else (lambda rng: 0.0)


def parse_windows(specs: Sequence[str]) -> dict[str, tuple[Window, ...]]:
    """Windows from ``ENDPOINT=N/SECONDS`` strings (e.g. ``graphql=200/660``), over the defaults.

    Giving an endpoint replaces its default windows; give it twice for two windows.
    """
    given: dict[str, list[Window]] = {}
    for spec in specs:
        try:
            endpoint, rate = spec.split("=", 1)
            n, seconds = rate.split("/", 1)
            given.setdefault(endpoint.strip(), []).append((int(n), float(seconds)))
        except ValueError:
            raise ValueError(f"rate {spec!r}: expected ENDPOINT=N/SECONDS, e.g. graphql=200/660") from None
    return {**DEFAULT_WINDOWS, **{k: tuple(v) for k, v in given.items()}}


class RateLimiter:
    """At most ``n`` requests per ``seconds`` for every window of every endpoint.

    ``windows`` maps an endpoint name to a sequence of ``(n, seconds)``; an endpoint that is not
    listed is not limited. ``jitter`` maps an endpoint name to a function of a ``random.Random``
    returning extra seconds to pause before each of its requests (``{}`` for none). ``clock``
    returns seconds (monotonic) and ``sleep`` waits; pass fakes in tests.
    """

    def __init__(self, windows: Mapping[str, Sequence[Window]] | None = None, *,
                 jitter: Mapping[str, Callable[[random.Random], float]] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None):
        windows = DEFAULT_WINDOWS if windows is None else windows
        self.windows: dict[str, tuple[Window, ...]] = {}
        for endpoint, ws in windows.items():
            checked = []
            for n, seconds in ws:
                if int(n) < 1 or float(seconds) <= 0:
                    raise ValueError(f"rate window for {endpoint!r} must be (n >= 1, seconds > 0), got {(n, seconds)}")
                checked.append((int(n), float(seconds)))
            self.windows[endpoint] = tuple(checked)
        self.jitter = dict(DEFAULT_JITTER if jitter is None else jitter)
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._times: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._hold: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"RateLimiter({self.windows!r})"

    def query_waittime(self, endpoint: str, now: float) -> float:
        """Seconds a request to ``endpoint`` made at ``now`` must wait (no jitter; reserves nothing)."""
        with self._lock:
            return max(0.0, self._earliest(endpoint, now) - now)

    def _earliest(self, endpoint: str, now: float) -> float:
        times = self._times[endpoint]
        longest = max((s for _, s in self.windows.get(endpoint, ())), default=0.0)
        while times and times[0] <= now - longest:
            times.popleft()
        t = max(now, self._hold.get(endpoint, now))
        if times:
            t = max(t, times[-1])  # reservations stay in order
        for n, seconds in self.windows.get(endpoint, ()):
            if len(times) >= n:
                # The request fits once the n-th most recent one has left the window.
                t = max(t, times[-n] + seconds)
        return t

    def wait(self, endpoint: str) -> float:
        """Sleep until a request to ``endpoint`` is allowed, record it, and return the seconds slept."""
        with self._lock:
            now = self.clock()
            at = self._earliest(endpoint, now)
            if endpoint in self.windows:
                self._times[endpoint].append(at)
            extra = self.jitter[endpoint](self.rng) if endpoint in self.jitter else 0.0
        delay = (at - now) + extra
        if delay > 0:
            self.sleep(delay)
        return delay

    def hold(self, endpoint: str, until: float) -> None:
        """Let no request to ``endpoint`` start before ``until`` (a ``clock()`` time), e.g. Retry-After."""
        if until != until:  # NaN holds nothing back; refuse it rather than let requests through unpaced
            raise ValueError("hold(): the time to wait until is NaN")
        with self._lock:
            self._hold[endpoint] = max(self._hold.get(endpoint, until), until)

    def until_window_frees(self, endpoint: str) -> float:
        """Seconds until the oldest request of ``endpoint``'s fullest window leaves it (0 if none).

        After a 429 without ``Retry-After`` instaloader waits this long (plus a margin).
        """
        with self._lock:
            now = self.clock()
            times = self._times[endpoint]
            waits = [times[-min(n, len(times))] + s - now for n, s in self.windows.get(endpoint, ()) if times]
            return max([0.0, *waits])
