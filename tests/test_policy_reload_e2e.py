"""A policy ConfigMap update reaches every worker of a running server, with no restart; a bad
update leaves the last good policy in force."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from builders import PROFILE, pod, review_document
from running_server import RunningServer, running_server

pytestmark = pytest.mark.e2e

EXAMPLE = (
    Path(__file__).resolve().parents[1] / "webhook" / "data" / "policy.example.yaml"
).read_text()
WITH_NEW_PROFILE = EXAMPLE.replace("profiles:\n", "profiles:\n  batch-jobs: {}\n", 1)
DEADLINE_S = 10.0
CONSECUTIVE = 8


def mount(directory: Path, text: str, version: int) -> None:
    """Write the policy as the kubelet updates a ConfigMap volume: a new timestamped directory,
    then `..data` swapped to it atomically."""
    target = directory / f"..2000_01_01_00_00_0{version}.{version}"
    target.mkdir()
    (target / "policy.yaml").write_text(text)
    old = (directory / "..data").resolve() if (directory / "..data").exists() else None
    (directory / "..data_tmp").symlink_to(target.name)
    (directory / "..data_tmp").replace(directory / "..data")
    if not (directory / "policy.yaml").is_symlink():
        (directory / "policy.yaml").symlink_to("..data/policy.yaml")
    if old is not None:
        shutil.rmtree(old)


def allowed(server: RunningServer, uid: str) -> bool:
    document = review_document(pod({PROFILE: "batch-jobs"}), uid=uid)  # payments: enforce
    status, body = server.send("/validate", document)  # a new connection: any worker
    assert status == 200
    return bool(body["response"]["allowed"])


def wait_for(server: RunningServer, expected: bool) -> float:
    started, streak, attempt = time.monotonic(), 0, 0
    while time.monotonic() - started < DEADLINE_S:
        attempt += 1
        streak = streak + 1 if allowed(server, f"r-{attempt}") is expected else 0
        if streak >= CONSECUTIVE:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"reviews did not settle on allowed={expected} in {DEADLINE_S} s")


def test_a_configmap_update_reaches_every_worker_without_a_restart(tmp_path: Path) -> None:
    config = tmp_path / "policy"
    config.mkdir()
    mount(config, EXAMPLE, 1)
    with running_server(tmp_path, "--config", str(config / "policy.yaml"), workers=2) as server:
        pid = server.process.pid
        assert not allowed(server, "before")  # batch-jobs is not a profile yet
        mount(config, WITH_NEW_PROFILE, 2)
        wait_for(server, expected=True)
        mount(config, "profiles: [not, a, mapping]\n", 3)  # a bad update
        time.sleep(2.5)  # past the reload interval (2 s) of every worker
        assert wait_for(server, expected=True) < 2  # the last good policy stays in force
        assert "policy reload failed" in server.log()
        assert server.process.poll() is None and server.process.pid == pid
