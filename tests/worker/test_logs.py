"""The logging pipeline (SPEC §8): JSON lines, bound task context, one path for all, no secrets.

Each test configures logging the way a worker does, with stderr a buffer, and reads
back what a log shipper would see.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from celery.app import trace as app_trace
from celery.signals import task_postrun, task_prerun

from scheduler.beat import SYNC_TASK
from tests.worker.conftest import LogLines
from worker.app import create_app
from worker.settings import Settings

LEAKED_KEY = "sk_live_abcdef123456"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature"

log = structlog.get_logger("tests.worker.test_logs")


def test_lines_are_json_when_stderr_is_not_a_tty(json_logs: LogLines) -> None:
    log.info("sync.finished", outcome="succeeded", records=3)

    [line] = json_logs()
    assert line["event"] == "sync.finished"
    assert (line["level"], line["logger"]) == ("info", "tests.worker.test_logs")
    assert (line["outcome"], line["records"]) == ("succeeded", 3)
    assert line["timestamp"].endswith("Z")


def test_console_format_is_readable_text(captured_stderr: Callable[[str], io.StringIO]) -> None:
    stderr = captured_stderr("console")

    log.info("sync.finished", records=3)

    text = stderr.getvalue()
    assert "sync.finished" in text
    assert "records=3" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_the_task_context_is_on_every_line_structlog_or_stdlib(
    json_logs: LogLines, tmp_path: Path
) -> None:
    # given a worker's signal handlers, and a sync task starting
    app = create_app(Settings.from_env({"SYNCWORKER_DATA_DIR": str(tmp_path)}))
    task = app.tasks[SYNC_TASK]
    task_prerun.send(sender=task, task_id="task-1", task=task, args=["integration-1"])
    structlog.contextvars.bind_contextvars(provider="stripe")  # as the sync binds it

    # when it logs through structlog and a library logs through the standard library
    log.info("sync.started")
    logging.getLogger("celery.app.trace").info("Task %s succeeded", "task-1")
    task_postrun.send(sender=task, task_id="task-1", task=task)
    log.info("worker.idle")

    # then both lines carry the task's context, and nothing leaks past the task's end
    started, traced, idle = json_logs()
    for line in (started, traced):
        assert line["task_id"] == "task-1"
        assert line["task"] == SYNC_TASK
        assert line["integration_id"] == "integration-1"
        assert line["provider"] == "stripe"
    assert traced["logger"] == "celery.app.trace"
    assert traced["event"] == "Task task-1 succeeded"
    assert "task_id" not in idle


def test_celerys_received_line_names_its_task_though_no_task_runs_yet(
    json_logs: LogLines,
) -> None:
    # given the consumer's thread, where no task context is bound (another task's lingers)
    structlog.contextvars.bind_contextvars(task_id="previous-task")

    # when Celery logs a message's arrival the way celery.worker.strategy does
    context = {"id": "task-9", "name": SYNC_TASK, "args": "('i-1',)", "kwargs": "{}", "eta": None}
    logging.getLogger("celery.worker.strategy").info(
        app_trace.LOG_RECEIVED, context, extra={"data": context}
    )

    # then the line carries that task's id and name as keys
    [received] = json_logs()
    assert received["event"] == f"Task {SYNC_TASK}[task-9] received"
    assert (received["task_id"], received["task"]) == ("task-9", SYNC_TASK)


def test_stdlib_logging_goes_through_the_same_redaction(json_logs: LogLines) -> None:
    celery = logging.getLogger("celery")

    celery.warning("connecting with token=%s", "abcdef123456")
    try:
        raise ValueError(f"provider refused {LEAKED_KEY}")
    except ValueError:
        celery.exception("task failed")

    warned, failed = json_logs()
    assert (warned["level"], warned["logger"]) == ("warning", "celery")
    assert warned["event"] == "connecting with ***"
    assert failed["level"] == "error"
    assert "ValueError: provider refused ***" in failed["exception"]
    assert LEAKED_KEY not in json.dumps([warned, failed])


def test_secrets_are_redacted_by_key_and_by_value(json_logs: LogLines) -> None:
    log.info(
        "connector.request",
        api_key="abc123",
        client_secret="shh",
        headers={"Authorization": BEARER, "Accept": "application/json"},
        note=f"retrying with {LEAKED_KEY}",
        tried=[LEAKED_KEY, "shpat_0123456789abcdef"],
        url="https://api.example.com/v1?api_key=abc123&limit=10",
    )
    try:
        raise RuntimeError(f"auth header was {BEARER}")
    except RuntimeError:
        log.exception("connector.crashed")

    request, crashed = json_logs()
    assert request["api_key"] == request["client_secret"] == "***"
    assert request["headers"] == {"Authorization": "***", "Accept": "application/json"}
    assert request["note"] == "retrying with ***"
    assert request["tried"] == ["***", "***"]
    assert request["url"] == "https://api.example.com/v1?***&limit=10"
    assert "RuntimeError: auth header was ***" in crashed["exception"]
    text = json.dumps([request, crashed])
    for secret in ("abc123", "shh", "eyJhbGci", LEAKED_KEY, "shpat_0123"):
        assert secret not in text


def test_chatty_libraries_are_quiet_below_warning(json_logs: LogLines) -> None:
    logging.getLogger("httpx").info('HTTP Request: GET https://api.stripe.com "200 OK"')
    logging.getLogger("httpx").warning("connection pool is full")

    assert [line["event"] for line in json_logs()] == ["connection pool is full"]


def test_secrets_inside_exception_values_and_quoted_pairs_are_redacted(
    json_logs: LogLines,
) -> None:
    # An exception passed as a value is rendered by repr, past the string redaction;
    # a body or dict quoted into a message has its secrets as "key": "value".
    log.warning("lease.renew_failed", error=ValueError(f"provider refused {LEAKED_KEY}"))
    logging.getLogger("celery").info("sent %s", {"client_secret": "hunter2hunter2", "limit": 10})
    log.info("connector.rejected", detail='{"error": "bad", "api_key": "abc123xyz"}')

    renewed, sent, rejected = json_logs()
    assert renewed["error"] == "ValueError('provider refused ***')"
    assert sent["event"] == "sent {***, 'limit': 10}"
    assert rejected["detail"] == '{"error": "bad", ***}'
