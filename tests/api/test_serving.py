"""`syncworker api` as deployed: the Procfile's web process in a real subprocess, a key
made by the CLI, and the Compose service and image that run the same command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

REPO: Final = Path(__file__).resolve().parents[2]
BIN: Final = Path(sys.executable).parent
# A cold start on a loaded 2-core CI machine (imports, migrations) takes a few seconds.
START_TIMEOUT_S: Final = 60.0


def procfile() -> dict[str, str]:
    lines = (REPO / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    """A fresh clone's environment: the embedded default in an empty folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
    env |= {"SYNCWORKER_DATA_DIR": str(tmp_path / "data"), "PATH": f"{BIN}:{env['PATH']}"}
    return env


@pytest.fixture
def web(embedded_env: dict[str, str]) -> Iterator[str]:
    """The Procfile's web process on a free port; its base URL once it answers."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S602 - the Procfile's line, run as a platform runs it
        procfile()["web"],
        shell=True,
        env=embedded_env | {"PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=30)


def wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            pytest.fail(f"syncworker api exited {process.returncode}: {output[-2000:]}")
        try:
            httpx.get(f"{url}/openapi.json", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"syncworker api did not answer on {url}")


def test_the_web_process_serves_the_integrations_to_a_cli_made_key(
    web: str, embedded_env: dict[str, str]
) -> None:
    made = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [BIN / "syncworker", "api-keys", "create", "--operator", "--json"],
        env=embedded_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    key = json.loads(made.stdout)["key"]

    listed = httpx.get(f"{web}/v1/integrations", headers={"Authorization": f"Bearer {key}"})
    anonymous = httpx.get(f"{web}/v1/integrations")

    assert listed.status_code == 200
    assert listed.json() == {"items": [], "nextCursor": None}
    assert anonymous.status_code == 401


def test_a_key_can_be_made_on_a_fresh_clone_before_the_api_ever_ran(
    embedded_env: dict[str, str],
) -> None:
    made = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [BIN / "syncworker", "api-keys", "create", "--workspace", "nowhere", "--json"],
        env=embedded_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    # the database was created and migrated; the workspace is what is missing
    assert made.returncode == 1
    assert json.loads(made.stdout) == {"ok": False, "message": "unknown workspace 'nowhere'"}


def test_the_procfile_and_compose_run_the_api_on_all_interfaces_of_their_host() -> None:
    compose = (REPO / "docker-compose.yml").read_text()

    assert procfile()["web"] == "syncworker api --host 0.0.0.0 --port ${PORT:-8000}"
    assert '["syncworker", "api", "--host", "0.0.0.0", "--port", "8000"]' in compose
    assert '"127.0.0.1:8000:8000"' in compose


def test_the_image_holds_every_package_the_console_script_needs() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()

    for package in ("models", "scheduler", "worker", "api", "fakes"):
        assert f"COPY {package} ./{package}" in dockerfile
