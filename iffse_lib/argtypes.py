"""Command-line value types: argparse rejects a bad value with one line and exit status 2.

Each is a function of the text that returns the value or raises ``argparse.ArgumentTypeError``;
``bounded`` makes one with a range.
"""

from __future__ import annotations

import argparse
import math
import re
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def bounded(kind: type, low: float | None = None, high: float | None = None, *,
            low_open: bool = False) -> Callable[[str], float | int]:
    """A type for ``kind`` values (int or float) in [low, high] (``low_open``: above low)."""
    def parse(text: str):
        value = _number(text, kind)
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"must be more than {low}, not {text}" if low_open
                                             else f"must be {low} or more, not {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


#: 1 or more
positive_int = bounded(int, 1)
#: 0 or more
nonnegative_int = bounded(int, 0)
#: more than 0 (and finite)
positive_float = bounded(float, 0, low_open=True)
#: any finite number
finite_float = bounded(float)
#: 0 or more (and finite)
nonnegative_float = bounded(float, 0)


def existing_file(text: str) -> Path:
    """A path to an existing regular file (not a folder)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return path


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


def tta(text: str):
    """A test-time augmentation: ``none``, ``flip`` or ``jitter:N`` (see iffse_lib/tta.py)."""
    from .tta import parse

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
