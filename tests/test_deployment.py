"""The Dockerfile, docker-compose.yml and Procfile say what the README says.

Docker cannot run in CI, so these read the files: what each process is started with.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dockerfile_command() -> list[str]:
    text = (REPO / "Dockerfile").read_text()
    [command] = re.findall(r"^CMD (\[.*\])$", text, flags=re.MULTILINE)
    parsed: list[str] = json.loads(command)
    return parsed


def compose_service(name: str) -> str:
    """A service's block of docker-compose.yml, as text."""
    text = (REPO / "docker-compose.yml").read_text()
    match = re.search(rf"^  {name}:\n((?:    .*\n|\n)*)", text, flags=re.MULTILINE)
    assert match is not None, name
    return match.group(1)


def test_the_image_runs_a_threads_worker_without_task_events() -> None:
    command = dockerfile_command()

    assert command[:4] == ["celery", "-A", "worker", "worker"]
    assert "-P" in command and command[command.index("-P") + 1] == "threads"
    assert not {"-E", "--task-events", "--events"} & set(command)


def test_the_images_data_folder_is_owner_only() -> None:
    text = (REPO / "Dockerfile").read_text()

    assert "install -d -m 0700 -o syncworker -g syncworker /var/lib/syncworker" in text


def test_composes_flower_has_a_login_that_unlocks_its_api_and_refuses_to_run_without() -> None:
    flower = compose_service("flower")

    assert "FLOWER_BASIC_AUTH: ${FLOWER_BASIC_AUTH:-}" in flower
    assert "127.0.0.1:5555:5555" in flower
    # the command compose runs ($$ is a literal $ once compose has interpolated the file)
    script = re.search(r"- >-\n((?:        .*\n)+)", flower)
    assert script is not None
    shell = " ".join(line.strip() for line in script.group(1).splitlines()).replace("$$", "$")
    for login, code in (("", 1), ("admin:s3cret", 0)):
        done = subprocess.run(  # noqa: S603 - the file's own script, with `exec` stubbed
            ["sh", "-c", shell.replace("exec celery", "exec echo celery")],  # noqa: S607
            env={"FLOWER_BASIC_AUTH": login, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == code, done.stderr
    assert done.stdout.strip() == "celery --broker=redis://redis:6379/0 flower"


def test_composes_worker_serves_metrics_to_the_compose_network() -> None:
    worker = compose_service("worker")

    assert 'SYNCWORKER_METRICS_PORT: "9808"' in worker
    assert 'SYNCWORKER_METRICS_ADDR: "0.0.0.0"' in worker


def test_beat_runs_the_same_way_everywhere() -> None:
    procfile = dict(
        line.split(": ", 1) for line in (REPO / "Procfile").read_text().splitlines() if line
    )
    assert procfile["beat"] == "celery -A worker beat --loglevel INFO"
    assert '["celery", "-A", "worker", "beat", "--loglevel", "INFO"]' in compose_service("beat")
