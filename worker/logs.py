"""Logging: structlog everywhere, JSON lines in production, readable on a terminal.

Celery's and the libraries' standard-library logging goes through the same
processors, so every line has the same shape, carries the task's bound context
(task id, integration id, provider) and passes the redaction processor, which
keeps credentials, tokens and keys out of every line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

import structlog
from structlog.typing import EventDict, Processor

REDACTED: Final = "***"

# Keys whose values are secrets whatever they hold.
SECRET_KEYS: Final = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|private[_-]?key|credential|authorization|"
    r"signature|cookie|session[_-]?id|client[_-]?secret)",
    re.IGNORECASE,
)
# Values that look like secrets wherever they appear: provider key formats, bearer tokens,
# PEM blocks, and key=value pairs with a secret-sounding key inside free text.
SECRET_VALUES: Final = re.compile(
    r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{6,}"
    r"|shpat_[A-Za-z0-9]{6,}|shpca_[A-Za-z0-9]{6,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|(?i:(?:secret|token|password|api_?key|consumer_secret)=)[^\s&\"']+"
    # A body or dict quoted into text: "client_secret": "...", 'password': '...'. The key's
    # affixes are bounded, so a quote before a long blob cannot make the scan quadratic.
    r"|[\"'][\w-]{0,40}(?i:secret|token|password|passwd|api_?key)[\w-]{0,40}[\"']"
    r"\s*:\s*(?:\"[^\"]*\"|'[^']*')"
)
# Libraries that narrate every step at INFO; their warnings still come through.
QUIET_LOGGERS: Final = ("transitions", "httpx", "httpcore", "urllib3")


def redact_value(value: Any) -> Any:
    """Scrub secret-looking substrings from text, recursing into containers."""
    if isinstance(value, str):
        return SECRET_VALUES.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    if isinstance(value, BaseException | bytes):
        # The renderer would repr these untouched, and their text often quotes a provider.
        return SECRET_VALUES.sub(REDACTED, repr(value))
    return value


def redact_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: REDACTED if SECRET_KEYS.search(str(key)) else redact_value(value)
        for key, value in mapping.items()
    }


def redact(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: no credential, token or key reaches a log line."""
    cleaned: MutableMapping[str, Any] = redact_mapping(event_dict)
    return dict(cleaned)


def celery_task_ids(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: Celery's own lines about a task carry its `task_id` and `task`.

    Celery logs "Task ... received" (and succeeded, failed, retry) with the task's id and
    name in the record's `data`, from the consumer thread, before `task_prerun` binds them:
    taken from there, such a line names its task like every other line of that task.
    """
    data = getattr(event_dict.get("_record"), "data", None)
    if isinstance(data, Mapping) and data.get("id"):
        event_dict["task_id"] = data["id"]
        if data.get("name"):
            event_dict["task"] = data["name"]
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        celery_task_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]


def configure_logging(log_format: str = "auto", level: str = "INFO") -> None:
    """Set up structlog and route standard logging through it; safe to call again."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
