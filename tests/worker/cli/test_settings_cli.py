"""A setting the process cannot use stops every command with one line naming it.

Run as real processes (`syncworker ...`, `celery -A worker ...`), since the point is
what an operator sees: no traceback, the variable, what is wrong, exit 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

COMMANDS = [
    ["syncworker", "db", "current"],
    ["syncworker", "db", "upgrade"],
    ["syncworker", "status", "--json"],
    ["syncworker", "integrations", "list"],
    ["syncworker", "integrations", "show", "00000000-0000-0000-0000-000000000001"],
    ["syncworker", "credentials", "rotate"],
    ["syncworker", "run"],
]
BAD = [
    ("SYNCWORKER_CONCURRENCY", "abc"),
    ("SYNCWORKER_CONCURRENCY", "0"),
    ("SYNCWORKER_LEASE_TTL", "0"),
    ("SYNCWORKER_MAX_RETRIES", "-1"),
    ("SYNCWORKER_METRICS_PORT", "99999"),
    ("SYNCWORKER_STRIPE_INTERVAL", "30"),
    ("SYNCWORKER_DATABASE_URL", "not a url"),
]


def run(
    command: list[str], tmp_path: Path, name: str, value: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
    environ.update({"SYNCWORKER_DATA_DIR": str(tmp_path / "data"), name: value})
    return subprocess.run(  # noqa: S603 - our own entry points
        [str(BIN / command[0]), *command[1:]],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Every command with one bad value, and every bad value with the first command.
CASES = [(command, *BAD[0]) for command in COMMANDS] + [(COMMANDS[0], *bad) for bad in BAD[1:]]


@pytest.mark.parametrize(
    ("command", "name", "value"), CASES, ids=[f"{' '.join(c[1:3])}-{n}={v}" for c, n, v in CASES]
)
def test_bad_setting_is_one_line_naming_the_variable_for_every_command(
    command: list[str], name: str, value: str, tmp_path: Path
) -> None:
    done = run(command, tmp_path, name, value)

    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert name in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists(), "nothing is created before the settings are read"


@pytest.mark.parametrize("subcommand", [["beat"], ["worker", "-P", "threads"], ["inspect", "ping"]])
def test_celery_with_a_bad_setting_exits_with_one_line(
    subcommand: list[str], tmp_path: Path
) -> None:
    done = run(["celery", "-A", "worker", *subcommand], tmp_path, "SYNCWORKER_CONCURRENCY", "-5")

    assert done.returncode != 0
    assert "SYNCWORKER_CONCURRENCY must be a whole number from 1 to 1000, got '-5'" in done.stderr
    assert "Traceback" not in done.stderr
