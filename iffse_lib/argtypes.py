"""Command-line value types: argparse rejects a bad value with one line and exit status 2.

Each is a function of the text that returns the value or raises ``argparse.ArgumentTypeError``;
``bounded`` makes one with a range.
"""

from __future__ import annotations

import argparse
import math
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
            raise argparse.ArgumentTypeError(f"must be {'more than' if low_open else 'at least'} {low}, not {text}")
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


def existing_file(text: str) -> Path:
    """A path to an existing regular file (not a folder)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return path
