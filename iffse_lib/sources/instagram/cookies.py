"""A logged-in session's cookies: read from a browser export, kept in memory, never shown.

:class:`SessionCookies` is the in-memory cookie jar: ``Set-Cookie`` answers from Instagram
(a fresh ``csrftoken``, ``rur``) replace the values for later requests and are never written
anywhere. :func:`scrub` takes cookie values and ``Cookie:`` text out of any message.
"""

from __future__ import annotations

import http.cookies
import json
import re
import threading
from pathlib import Path
from typing import Mapping

from ...errors import LoginRequired, SourceError

class SessionCookies:
    """A logged-in session's cookies, exported from a browser. Treated as a secret.

    Read with :meth:`from_file` from a Netscape ``cookies.txt`` (tab-separated: domain, flag, path,
    secure, expiry, name, value; ``#HttpOnly_`` prefixes allowed) or a JSON export (a list of
    ``{"name", "value", "domain"}`` objects as written by browser extensions, or a plain
    ``{"name": "value"}`` object). Only instagram.com cookies are kept. The values are never
    shown: ``repr`` lists the cookie names only.
    """

    def __init__(self, values: Mapping[str, str]):
        values = {str(k): str(v) for k, v in values.items() if v}
        for name, value in values.items():
            if any(c in name + value for c in "\r\n\0"):
                raise SourceError(f"the cookie {name!r} holds a line break or NUL, which would split the request "
                                  "headers: export the cookies again")
        self.__values = values
        self.__lock = threading.Lock()
        self.__old: list[str] = []
        if not self.__values.get("sessionid"):
            raise LoginRequired(
                "the cookies hold no `sessionid`: export them from a browser while logged in to "
                "instagram.com (Netscape cookies.txt or JSON) and pass that file", kind="login_required")

    @classmethod
    def from_file(cls, path: str | Path) -> "SessionCookies":
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise SourceError(f"cannot read the cookies file {path}: {exc.strerror}") from None
        values: dict[str, str] = {}
        stripped = text.lstrip()
        if stripped.startswith(("[", "{")):
            try:
                data = json.loads(stripped)
            except ValueError:
                raise SourceError(f"{path} is not valid JSON; export the cookies as JSON or Netscape cookies.txt") from None
            if isinstance(data, dict) and isinstance(data.get("cookies"), list):
                data = data["cookies"]
            if isinstance(data, dict):
                values = {str(k): str(v) for k, v in data.items() if isinstance(v, (str, int))}
            elif isinstance(data, list):
                for item in data:
                    if isinstance(item, dict) and "name" in item and "value" in item:
                        if "instagram.com" in str(item.get("domain", "instagram.com")):
                            values[str(item["name"])] = str(item["value"])
        else:
            for number, line in enumerate(text.splitlines(), start=1):
                if line.startswith("#HttpOnly_"):
                    line = line[len("#HttpOnly_"):]
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != 7:
                    raise SourceError(f"{path} line {number}: not a Netscape cookies.txt line (7 tab-separated "
                                      "fields expected); export the cookies again or use JSON")
                if "instagram.com" in fields[0]:
                    values[fields[5]] = fields[6]
        if not values:
            raise SourceError(f"{path} holds no instagram.com cookies; export them while logged in to instagram.com")
        return cls(values)

    @property
    def names(self) -> list[str]:
        return sorted(self.__values)

    def header(self) -> str:
        """The ``Cookie`` request header."""
        with self.__lock:
            return "; ".join(f"{k}={v}" for k, v in self.__values.items())

    def get(self, name: str) -> str | None:
        with self.__lock:
            return self.__values.get(name)

    def values(self) -> list[str]:
        """Every value, current and replaced, for :func:`scrub` (never print them)."""
        with self.__lock:
            return list(self.__values.values()) + list(self.__old)

    def update_from(self, set_cookie_headers: list[str]) -> list[str]:
        """Take the cookies of ``Set-Cookie`` answer headers; returns the names that changed.

        Values with CR/LF and deletions of ``sessionid`` are ignored (a logged-out session shows
        up as a login answer on the next request instead).
        """
        changed = []
        for header in set_cookie_headers:
            jar = http.cookies.SimpleCookie()
            try:
                jar.load(header)
            except http.cookies.CookieError:
                continue
            for name, morsel in jar.items():
                value = morsel.value
                if not value or any(c in value for c in "\r\n\0") or value == '""':
                    continue
                with self.__lock:
                    if self.__values.get(name) != value:
                        if name in self.__values:
                            self.__old.append(self.__values[name])
                        self.__values[name] = value
                        changed.append(name)
        return changed

    def __repr__(self) -> str:
        return f"SessionCookies(names={self.names}, values hidden)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("SessionCookies are secret and are not pickled")



_SECRET_NAMES = ("sessionid", "csrftoken", "ds_user_id", "rur", "mid", "ig_did", "shbid", "shbts", "datr")
_SECRET_RE = re.compile(r"(?i)\b(" + "|".join(_SECRET_NAMES) + r")(\s*[=:]\s*|\\?[\"']\s*:\s*\\?[\"'])[^;\s&\"'\\,}]+")
_COOKIE_HEADER_RE = re.compile(r"(?i)\b(set-)?cookie\s*:[^\r\n]*")


def scrub(text: str, cookies: SessionCookies | None = None) -> str:
    """``text`` without cookie values: known values, ``sessionid=…``-like pairs and ``Cookie:`` lines."""
    text = str(text)
    if cookies is not None:
        for value in sorted(cookies.values(), key=len, reverse=True):
            if len(value) >= 4:
                text = text.replace(value, "<hidden>")
    text = _COOKIE_HEADER_RE.sub(lambda m: m.group(0).split(":", 1)[0] + ": <hidden>", text)
    return _SECRET_RE.sub(lambda m: m.group(1) + m.group(2) + "<hidden>", text)
