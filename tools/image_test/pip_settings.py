"""This machine's pip index settings, handed to the image build as build secrets.

The build stage's pip must reach the index the way pip here does: the same index URLs, trusted
hosts, proxy, timeout and certificate bundle (an intercepting proxy's CA, a private mirror's).
They are read from `pip config list` (files and PIP_* variables, the variables winning), written
to a pip.conf that names the bundle at /run/secrets/pip-cert, and passed with `--secret`: mounted
for the RUN steps that install, never stored in a layer. Local paths and file:// indexes are left
out (the build cannot see this machine's disk) and said so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tools.image_test.report import note

CERT_SECRET = "/run/secrets/pip-cert"
# Settings that decide where pip finds packages and how it connects.
NETWORK_KEYS = (
    "index-url",
    "extra-index-url",
    "find-links",
    "trusted-host",
    "proxy",
    "timeout",
    "default-timeout",
    "retries",
)
SCOPE_RANK = {":env:": 3, "site": 2, "user": 1, "global": 0}
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def _is_remote(value: str) -> bool:
    return value.startswith(("http://", "https://"))


@dataclass
class BuildSecrets:
    pip_conf: str
    cert: Path | None
    proxies: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def docker_args(self, directory: Path) -> list[str]:
        conf = directory / "pip.conf"
        conf.write_text(self.pip_conf)
        args = ["--secret", f"id=pip.conf,src={conf}"]
        if self.cert is not None:
            args += ["--secret", f"id=pip-cert,src={self.cert}"]
        for name in self.proxies:  # Docker's predefined proxy arguments stay out of the history
            args += ["--build-arg", name]
        return args


def read_pip_config() -> dict[str, str]:
    """pip's settings here as `key: value`, the most specific scope winning."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    chosen: dict[str, tuple[int, str]] = {}
    for line in listed.splitlines():
        name, _, quoted = line.partition("=")
        scope, _, key = name.rpartition(".")
        section = scope.split(".")[-1] if scope != ":env:" else ":env:"
        if section not in (":env:", "global", "install"):
            continue
        rank = SCOPE_RANK.get(scope.split(".")[0], 0) * 2 + (section == "install")
        if key not in chosen or rank >= chosen[key][0]:
            chosen[key] = (rank, quoted.strip().strip("'\""))
    return {key: value for key, (_, value) in chosen.items()}


def build_secrets(settings: dict[str, str] | None = None) -> BuildSecrets:
    settings = read_pip_config() if settings is None else settings
    lines = ["[global]"]
    left_out: list[str] = []
    for key in NETWORK_KEYS:
        if key not in settings:
            continue
        values = settings[key].split()
        if key in ("index-url", "extra-index-url", "find-links"):
            left_out += [f"{key} {v}" for v in values if not _is_remote(v)]
            values = [v for v in values if _is_remote(v)]
        if values:
            lines.append(f"{key} = {' '.join(values)}")
    cert_setting = (
        settings.get("cert")
        or os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("SSL_CERT_FILE")
    )
    cert = Path(cert_setting) if cert_setting and Path(cert_setting).is_file() else None
    if cert is not None:
        lines.append(f"cert = {CERT_SECRET}")
    for other in ("constraint", "requirement"):
        if other in settings:
            left_out.append(f"{other} {settings[other]} (the build has its own)")
    proxies = [name for name in PROXY_VARIABLES if os.environ.get(name)]
    return BuildSecrets("\n".join(lines) + "\n", cert, proxies, left_out)


def describe(secrets: BuildSecrets) -> None:
    shown = secrets.pip_conf.splitlines()[1:] or ["(pip's defaults)"]
    note(f"pip settings for the build: {'; '.join(shown)}")
    if secrets.cert is not None:
        note(f"certificate bundle for the build: {secrets.cert}")
    if secrets.proxies:
        note(f"proxy variables passed on: {', '.join(secrets.proxies)}")
    for item in secrets.left_out:
        note(f"left out (not reachable from the build): {item}")
