"""Provider text made safe to store and show: bounded, printable, with secrets redacted.

A provider's error `code` or `type` is copied into the run's error, the CLI and the
page. A hostile or careless provider can put a megabyte there, terminal escape
sequences (which would drive the operator's terminal), or the caller's own key
echoed back. Every connector's error path goes through here: the HTTP layer cleans
each error detail (`clean_detail`), and `worker.connectors.base.run_sync` cleans the
error and warnings a sync returns (`clean_message`) before they are stored.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

REDACTED: Final = "[redacted]"
# An error code is a word or two; a longer detail is not a code.
MAX_DETAIL_CHARS: Final = 120
# A run's error or warning: a line naming the stream, the endpoint and the reason.
MAX_MESSAGE_CHARS: Final = 500
ELLIPSIS: Final = "…"

# Credentials the providers we speak to issue, by their documented shapes.
KEY_SHAPES: Final = re.compile(
    r"""
    \b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+    # Stripe keys
    | \bwhsec_[A-Za-z0-9+/=]+                    # webhook signing secrets
    | \bshp(?:at|ss|ca|pa)_[A-Za-z0-9]+          # Shopify tokens and secrets
    | \b(?:ck|cs)_[A-Za-z0-9]{16,}               # WooCommerce consumer key/secret
    | \b(?:pdl_)?(?:live|sdbx)_apikey_[A-Za-z0-9_]+  # Paddle keys
    | \beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*  # JWTs
    | \bBearer\s+\S+
    | -----BEGIN[^-]*PRIVATE\ KEY-----
    """,
    re.VERBOSE,
)
# In a provider's detail, any long run of token characters mixing letters and digits.
TOKEN_LIKE: Final = re.compile(r"[A-Za-z0-9_+/=-]{24,}")


# Only this many times the kept length is read at all: a provider's 16 MiB error code is
# cut before the character-by-character cleaning, not after (a key cut at the window's
# edge keeps its prefix, which the patterns still match).
READ_FACTOR: Final = 4


def clean_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` without control characters or key-shaped strings, at most `limit` characters."""
    window = text[: limit * READ_FACTOR]
    return _truncated(
        KEY_SHAPES.sub(REDACTED, _printable(window)), limit, cut=len(text) > len(window)
    )


def clean_detail(text: str) -> str:
    """A provider's error detail made safe: also redacts any long token-like run."""
    window = text[: MAX_DETAIL_CHARS * READ_FACTOR]
    cleaned = TOKEN_LIKE.sub(_token_or_word, KEY_SHAPES.sub(REDACTED, _printable(window)))
    return _truncated(cleaned, MAX_DETAIL_CHARS, cut=len(text) > len(window))


def _printable(text: str) -> str:
    """Control and format characters (ESC, NUL, bidi overrides) removed; lines joined."""
    return "".join(
        " " if char in "\r\n\t" else char
        for char in text
        if char in "\r\n\t" or unicodedata.category(char) not in ("Cc", "Cf")
    )


def _token_or_word(found: re.Match[str]) -> str:
    run = found.group(0)
    is_token = any(ch.isdigit() for ch in run) and any(ch.isalpha() for ch in run)
    return REDACTED if is_token else run


def _truncated(text: str, limit: int, *, cut: bool = False) -> str:
    """At most `limit` characters, ending in an ellipsis when anything was left out."""
    if len(text) <= limit and not cut:
        return text
    return text[: limit - 1] + ELLIPSIS
