"""``type=`` functions for argparse: a bad value exits 2 with one line that says what was wrong.

Each takes the option's text and returns the value, or raises :class:`argparse.ArgumentTypeError`
(argparse prints ``iffse …: error: argument --workers: must be 1 or more, not 0`` and exits 2).
"""

from __future__ import annotations

import argparse
import math
import re
import urllib.parse
from datetime import datetime, timezone


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return value


def positive_int(text: str) -> int:
    """A whole number, 1 or more."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number, 0 or more."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def finite_float(text: str) -> float:
    """Any number but NaN and infinity."""
    value = _float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number, 0 or more."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host, without its trailing slash."""
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL with a host: {text!r} (e.g. https://www.instagram.com)")
    return text.strip().rstrip("/")


def host(text: str) -> str:
    """A host name (``cdn.example.org``, ``127.0.0.1:8080``) or a URL whose host is taken."""
    text = text.strip()
    netloc = urllib.parse.urlsplit(text).netloc if "://" in text else text
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d{1,5})?", netloc or ""):
        raise argparse.ArgumentTypeError(f"not a host name or URL: {text!r} (e.g. cdn.example.org)")
    return netloc.lower()


def hashtag(text: str) -> str:
    """A hashtag without its ``#``: letters, digits and underscores."""
    tag = text.strip().lstrip("#")
    if not re.fullmatch(r"\w+", tag):
        raise argparse.ArgumentTypeError(f"not a hashtag: {text!r} (letters, digits and _ only, e.g. selfie)")
    return tag


def utc_date(text: str) -> datetime:
    """A date (``2024-06-15``) or a date and time (``2024-06-15T12:00``), in UTC unless it says otherwise."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (e.g. 2024-06-15)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def rate_window(text: str) -> str:
    """``ENDPOINT=N/SECONDS`` with N at least 1 and SECONDS above 0; returned as given."""
    m = re.fullmatch(r"\s*([a-z_]+)\s*=\s*(\S+?)\s*/\s*(\S+)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ENDPOINT=N/SECONDS, e.g. graphql=200/660")
    try:
        n, seconds = int(m[2]), float(m[3])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: N must be a whole number and SECONDS a number") from None
    if n < 1 or not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: N must be 1 or more and SECONDS more than 0")
    return text
