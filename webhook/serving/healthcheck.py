"""The image's HEALTHCHECK: `python -m webhook.serving.healthcheck` asks /healthz where `serve` is.

`serve` writes the URL of its /healthz to the file EGRESS_GUARD_HEALTHCHECK_FILE names (the image
sets it) before it starts, so the check follows `--host` and `--port` given on the command line as
well as in the environment, and a server bound to one address is asked there. Until that file
exists the address comes from EGRESS_GUARD_HOST and EGRESS_GUARD_PORT. The certificate is not
verified: the check asks whether this server answers, not whom to trust. Standard library only,
since it runs every few seconds.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

FILE_ENV = "EGRESS_GUARD_HEALTHCHECK_FILE"
TIMEOUT_S = 2.0


def healthz_url(host: str, port: int | str) -> str:
    """The URL that reaches /healthz of a server bound to `host`: a wildcard address is reached
    on the loopback address of its family."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"https://[{host}]:{port}/healthz" if ":" in host else f"https://{host}:{port}/healthz"


def write_url_file(path: Path, host: str, port: int) -> None:
    """Record where this server answers, for the HEALTHCHECK (written whole or not at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(healthz_url(host, port) + "\n")
    tmp.replace(path)


def target_url(environ: Mapping[str, str]) -> str:
    written = environ.get(FILE_ENV)
    if written:
        try:
            url = Path(written).read_text().strip()
        except OSError:
            url = ""
        if url:
            return url
    return healthz_url(
        environ.get("EGRESS_GUARD_HOST", "127.0.0.1"), environ.get("EGRESS_GUARD_PORT", "8443")
    )


def probe(url: str, timeout: float = TIMEOUT_S) -> str | None:
    """None when /healthz answers 200, else what went wrong."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as reply:
            status = int(reply.status)
    except (OSError, ValueError) as err:  # HTTPError and URLError are OSErrors
        return str(err)
    return None if status == 200 else f"HTTP {status}"


def main() -> int:
    url = target_url(os.environ)
    problem = probe(url)
    if problem is not None:
        print(f"unhealthy: {url}: {problem}", file=sys.stderr)
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
