"""A local stand-in for the public Python base image, built from Debian packages.

When the Dockerfile's PYTHON_IMAGE cannot be pulled (no route to Docker Hub), the image is built
on a Debian bookworm root filesystem made by debootstrap with `python3.11` and `python3-venv`: the
same Debian release and Python minor version, with `python` on PATH as the official image has it.
It is built once and kept (`--rebuild-base` builds it again).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tools.image_test.engine import Docker, apt_install
from tools.image_test.report import Failed, note, run

STANDIN_IMAGE = "egress-guard-standin-base:python3.11-bookworm"
SUITE = "bookworm"
PACKAGES = ("python3.11", "python3-venv", "ca-certificates", "netbase")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "EGRESS_GUARD_DEBIAN_MIRROR"
# What debian:bookworm-slim leaves out, and what apt leaves behind.
TRIMMED = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf/templates.dat-old",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "var/log",
    "debootstrap",
)


def mirror() -> str:
    """EGRESS_GUARD_DEBIAN_MIRROR, else the first Debian archive this machine's apt uses."""
    given = os.environ.get(MIRROR_ENV)
    if given:
        return given
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri
    return DEFAULT_MIRROR


def build_standin(docker: Docker, *, rebuild: bool = False) -> str:
    if docker.has_image(STANDIN_IMAGE) and not rebuild:
        note(f"using the stand-in base built before: {STANDIN_IMAGE}")
        return STANDIN_IMAGE
    if os.geteuid() != 0:
        raise Failed("building the stand-in base needs root (debootstrap)")
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    with tempfile.TemporaryDirectory(prefix="egress-guard-rootfs-") as scratch:
        root = Path(scratch) / "rootfs"
        source = mirror()
        note(f"debootstrap {SUITE} from {source} with {', '.join(PACKAGES)} (a few minutes)")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                source,
            ],
            quiet=True,
        )
        (root / "usr/local/bin/python").symlink_to("/usr/bin/python3.11")
        (root / "usr/local/bin/python3").symlink_to("/usr/bin/python3.11")
        for trimmed in TRIMMED:
            path = root / trimmed
            if path.is_dir():
                shutil.rmtree(path)
                path.mkdir()
            elif path.exists():
                path.unlink()
        for gone in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial"):
            (root / gone).mkdir(parents=True, exist_ok=True)
        note(f"importing the root filesystem as {STANDIN_IMAGE}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                docker.client,
                "import",
                "--change",
                'CMD ["python3"]',
                "--change",
                "ENV LANG=C.UTF-8",
                "-",
                STANDIN_IMAGE,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise Failed(f"docker import failed: {imported.stderr.strip()}")
    return STANDIN_IMAGE
