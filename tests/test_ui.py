"""The Definitions load where users load them: `dagster definitions validate` and the web UI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _env(cohort, store, home) -> dict:
    env = dict(os.environ, METORIGIN_COHORT=str(cohort), METORIGIN_STORE=str(store), DAGSTER_HOME=str(home))
    env["DAGSTER_DISABLE_TELEMETRY"] = "true"
    return env


@pytest.mark.slow
def test_definitions_validate(cohort, tmp_path):
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "orchestration.definitions"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(cohort, tmp_path / "s", tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "All code locations passed validation" in result.stderr + result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


@pytest.mark.slow
def test_metorigin_ui_serves_the_asset_graph(cohort, tmp_path):
    port = _free_port()
    home = tmp_path / "home"
    # `dagster dev` ignores SIGTERM from a parent script: own process group, killed as a group.
    server = subprocess.Popen(
        [str(BIN / "metorigin"), "ui", "--cohort", str(cohort), "--store", str(tmp_path / "s"), "--port", str(port)],
        env=_env(cohort, tmp_path / "s", home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, "dagster dev exited"
                assert time.monotonic() < deadline, "the UI did not come up in 180 s"
                time.sleep(2)
        for _ in range(60):  # the code location loads after the server answers
            data = _graphql(port, "{ assetNodes { assetKey { path } } }")
            keys = {tuple(n["assetKey"]["path"]) for n in data["assetNodes"]}
            if keys:
                break
            time.sleep(2)
        assert {("patients",), ("scans",)} <= keys
        repos = _graphql(
            port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name } jobs { name } } } } }"
        )["repositoriesOrError"]["nodes"]
        assert "new_scans_sensor" in {s["name"] for r in repos for s in r["sensors"]}
        assert {"ingest_cohort", "process_scan"} <= {j["name"] for r in repos for j in r["jobs"]}
        assert {("segmentations",), ("lesions",), ("radiomics_features",), ("lesion_slices",)} <= keys
        assert (home / ".nux" / "nux.yaml").read_text().strip() == "seen: 1"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
