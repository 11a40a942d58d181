"""A Docker engine to build and run the image with, installed and started when missing.

A fresh Debian machine gets Debian's `docker.io` (dockerd and a client whose `docker build` uses
BuildKit, which the Dockerfile's `RUN --mount` needs). A newer client without the buildx plugin
cannot build with BuildKit, so the client is chosen by what it can do, not by PATH order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.image_test.report import Failed, note, run

DEBIAN_PACKAGES = ("docker.io",)
DAEMON_LOG = Path("/tmp/egress-guard-image-test-dockerd.log")
DAEMON_START_S = 60.0


def apt_install(*packages: str) -> None:
    """Install Debian packages (root only): what a fresh CI machine lacks."""
    if os.geteuid() != 0:
        raise Failed(f"{', '.join(packages)} missing, and only root may install them (apt-get)")
    note(f"installing {' '.join(packages)} from Debian's archive")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env, quiet=True)
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    run(install, env=env, quiet=True)


def _client_version(client: str) -> tuple[int, ...]:
    done = subprocess.run(
        [client, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    digits = done.stdout.strip().split("+")[0].split("-")[0].split(".")
    return tuple(int(d) for d in digits if d.isdigit())


def _builds_with_buildkit(client: str) -> bool:
    """Clients before 23.0 build with BuildKit themselves; later ones only through buildx."""
    has_buildx = subprocess.run(
        [client, "buildx", "version"], capture_output=True, check=False
    ).returncode
    return has_buildx == 0 or _client_version(client)[:1] < (23,)


@dataclass(frozen=True)
class Docker:
    client: str

    def __call__(self, *args: str, quiet: bool = False, check: bool = True) -> str:
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        return run([self.client, *args], env=env, quiet=quiet, check=check)

    def capture(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.client, *args], capture_output=True, text=True, check=False, timeout=300
        )

    def has_image(self, name: str) -> bool:
        return self.capture("image", "inspect", name).returncode == 0

    def server_version(self) -> str | None:
        done = self.capture("version", "--format", "{{.Server.Version}}")
        return done.stdout.strip() if done.returncode == 0 else None


def _candidates() -> list[str]:
    found = [shutil.which("docker"), "/usr/bin/docker"]
    unique: list[str] = []
    for path in found:
        if (
            path
            and Path(path).is_file()
            and os.path.realpath(path) not in map(os.path.realpath, unique)
        ):
            unique.append(path)
    return unique


def _start_daemon() -> None:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise Failed("dockerd is not installed")
    note(f"starting dockerd in the background (log: {DAEMON_LOG})")
    with DAEMON_LOG.open("ab") as log:
        subprocess.Popen(  # outlives this run, as a system daemon would
            [dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def docker_engine() -> Docker:
    """A client that builds with BuildKit, talking to a running daemon."""
    if not shutil.which("dockerd") or not any(map(_builds_with_buildkit, _candidates())):
        apt_install(*DEBIAN_PACKAGES)
    client = next((c for c in _candidates() if _builds_with_buildkit(c)), None)
    if client is None:
        raise Failed("no Docker client that builds with BuildKit (install buildx or docker.io)")
    docker = Docker(client)
    if docker.server_version() is None:
        _start_daemon()
        deadline = time.monotonic() + DAEMON_START_S
        while docker.server_version() is None:
            if time.monotonic() > deadline:
                raise Failed(f"dockerd did not answer within {DAEMON_START_S:.0f} s: {DAEMON_LOG}")
            time.sleep(0.5)
    note(
        f"docker: client {client} ({'.'.join(map(str, _client_version(client)))}), "
        f"engine {docker.server_version()}"
    )
    return docker


def pull(docker: Docker, image: str, timeout_s: float = 120.0) -> bool:
    """Whether `image` is here or could be pulled."""
    if docker.has_image(image):
        return True
    try:
        done = subprocess.run(
            [docker.client, "pull", "-q", image],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        note(f"pulling {image} took over {timeout_s:.0f} s")
        return False
    if done.returncode != 0:
        note(f"cannot pull {image}: {done.stderr.strip().splitlines()[-1:]}")
    return done.returncode == 0


def remove_containers(docker: Docker, names: Sequence[str]) -> None:
    for name in names:
        docker.capture("rm", "-f", "-v", name)
