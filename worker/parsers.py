"""How a setting's text is read and checked: one `Parser` per kind of value.

A parser's `read` returns the value or raises `Problem`, the end of a sentence that
`worker.settings` prefixes with the variable's name; `allowed` is the range the README's
settings table states, and `shown` how an error may quote the text (a URL's password
masked; secrets are never quoted at all).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from kombu.utils.url import maybe_sanitize_url
from redis.connection import parse_url as parse_redis_url
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class Problem(ValueError):
    """Raised by a parser: what is wrong with a value, as the end of a sentence."""


@dataclass(frozen=True)
class Parser:
    """Reads one setting's text: `read` raises `Problem`; `allowed` is the README's range.

    `shown` is how an error quotes the value (a URL's password masked).
    """

    read: Callable[[str], Any]
    allowed: str
    shown: Callable[[str], str] = repr


def whole(low: int, high: int, unit: str = "") -> Parser:
    def read(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise Problem(f"must be a whole number from {low} to {high}")
        return value

    return Parser(read, f"{low}-{high}{unit}")


def duration(low: int, high: int) -> Parser:
    """Whole seconds as a `timedelta`."""
    seconds = whole(low, high, " s")
    return Parser(lambda raw: timedelta(seconds=seconds.read(raw)), seconds.allowed)


def number(low: float, high: float, unit: str = "") -> Parser:
    def read(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # `not <=` also refuses NaN
            raise Problem(f"must be a number from {low:g} to {high:g}")
        return value

    return Parser(read, f"{low:g}-{high:g}{unit}")


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _flag(raw: str) -> bool:
    if raw.lower() not in _TRUE | _FALSE:
        raise Problem("must be true or false (1/0, yes/no, on/off)")
    return raw.lower() in _TRUE


FLAG: Final = Parser(_flag, "true/false")


def one_of(*choices: str, upper: bool = False) -> Parser:
    def read(raw: str) -> str:
        if raw.lower() not in choices:
            raise Problem(f"must be one of {', '.join(choices)}")
        return raw.upper() if upper else raw.lower()

    return Parser(read, " / ".join(choices))


def _check_url(raw: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(raw)
        _ = parts.port  # a port that is not a number, or out of range, raises here
    except ValueError:
        raise Problem("is not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes and scheme.split("+")[0] not in schemes:
        raise Problem(f"must be a URL starting {' or '.join(s + ':' for s in schemes)}")
    if scheme in ("http", "https", "redis", "rediss") and not parts.hostname:
        raise Problem("must name a host")
    return raw


# user:password@ in a URL kombu cannot parse.
_USERINFO: Final = re.compile(r"(//[^/@:]*:)[^/@]*@")


def _masked(raw: str) -> str:
    """A URL quoted for an error, its password masked."""
    try:
        return repr(maybe_sanitize_url(raw))
    except ValueError:
        return repr(_USERINFO.sub(r"\1**@", raw))


def url(*schemes: str, shown: str = "") -> Parser:
    """A URL whose scheme is one of `schemes` (a `+driver` suffix allowed)."""
    allowed = shown or ", ".join(s + "://" for s in schemes)
    return Parser(lambda raw: _check_url(raw, schemes), allowed, _masked)


# The database drivers this project installs (psycopg 3; the standard library's sqlite3).
DATABASE_DRIVERS: Final = ("postgresql", "postgresql+psycopg", "sqlite", "sqlite+pysqlite")


def _check_database(raw: str) -> str:
    try:
        driver = make_url(raw).drivername
    except ArgumentError:
        raise Problem("is not a database URL") from None
    if driver not in DATABASE_DRIVERS:
        raise Problem(f"names a driver not installed here; use {', '.join(DATABASE_DRIVERS)}")
    return raw


def _check_redis(raw: str) -> str:
    parts = urlsplit(raw)
    database = parts.path.strip("/")
    if (
        parts.scheme.lower() != "unix"
        and database
        and not (database.isascii() and database.isdigit())
    ):
        raise Problem("must name its database by number (redis://host:6379/0)")
    try:
        parse_redis_url(raw)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    except ValueError:
        raise Problem("has a query option redis cannot read") from None
    return raw


def _database_url(raw: str) -> str:
    return _check_database(_check_url(raw, ("postgresql", "sqlite")))


def _broker_url(raw: str) -> str:
    _check_url(raw, ("redis", "rediss", "sqla"))
    if raw.lower().startswith("sqla+"):
        return "sqla+" + _check_database(raw[len("sqla+") :])
    return _check_redis(raw)


def _redis_url(raw: str) -> str:
    return _check_redis(_check_url(raw, ("redis", "rediss", "unix")))


DATABASE_URL: Final = Parser(_database_url, "postgresql://, sqlite:///", _masked)
BROKER_URL: Final = Parser(_broker_url, "redis://, rediss://, sqla+<db url>", _masked)
REDIS_URL: Final = Parser(_redis_url, "redis://, rediss://, unix://", _masked)


def _urls(raw: str) -> tuple[str, ...]:
    found = tuple(part.strip() for part in raw.split(",") if part.strip())
    for one in found:
        _check_url(one, ("http", "https"))
    return found


# Comma-separated http(s) URLs; an error never quotes one (they often embed a token).
URLS: Final = Parser(_urls, "comma-separated http(s) URLs")
TEXT: Final = Parser(str, "text")
FOLDER: Final = Parser(Path, "a folder")


# A DNS name (RFC 1123 labels); IP addresses are checked by `ipaddress`.
_HOST_NAME: Final = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _address(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(raw):
        raise Problem("must be an IP address or a host name")
    return raw


ADDRESS: Final = Parser(_address, "an IP address or host name")


def name_text(max_chars: int) -> Parser:
    def read(raw: str) -> str:
        if len(raw) > max_chars or not raw.isprintable():
            raise Problem(f"must be printable text of at most {max_chars} characters")
        return raw

    return Parser(read, f"text, at most {max_chars} characters")


def secret_text(min_chars: int) -> Parser:
    """A secret of at least `min_chars` printable characters (never quoted in an error)."""

    def read(raw: str) -> str:
        if len(raw) < min_chars or not raw.isprintable():
            raise Problem(f"must be printable text of at least {min_chars} characters")
        return raw

    return Parser(read, f"text, at least {min_chars} characters")
