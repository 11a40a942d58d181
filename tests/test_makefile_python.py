"""`make` checks the Python version before installing anything, and makes again a .venv that
another interpreter made, instead of reusing it broken."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def fake_python(path: Path, version: str) -> Path:
    """An interpreter that says it is `version`, and fails to make a venv (so nothing installs)."""
    major, minor = (int(part) for part in version.split(".")[:2])
    ok = 0 if (major, minor) >= (3, 11) else 1
    path.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --version) echo "Python {version}"; exit 0;; -m) exit 3;; esac\n'
        f'case "$*" in *print*) echo "{major}.{minor}"; exit 0;; esac\n'
        f"exit {ok}\n"
    )
    path.chmod(0o755)
    return path


def make(tmp_path: Path, python: Path) -> subprocess.CompletedProcess[str]:
    venv = tmp_path / "venv"
    return subprocess.run(
        ["make", "-s", f"PYTHON={python}", f"VENV={venv}", f"{venv}/.installed"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_old_python_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    result = make(tmp_path, fake_python(tmp_path / "python3.10", "3.10.12"))
    assert result.returncode != 0
    assert "egress-guard needs Python 3.11 or newer" in result.stderr
    assert "Python 3.10.12" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_a_venv_of_another_interpreter_is_made_again_and_the_install_is_announced(
    tmp_path: Path,
) -> None:
    stale = tmp_path / "venv" / "bin"
    stale.mkdir(parents=True)
    (stale / "python").write_text("#!/bin/sh\nexit 1\n")
    (stale / "python").chmod(0o755)
    (stale / "marker").write_text("old")
    result = make(tmp_path, fake_python(tmp_path / "python3.12", "3.12.1"))
    assert "was made by another Python (or is broken): making it again" in result.stderr
    assert "installing the pinned dependencies" in result.stderr
    assert not (stale / "marker").exists()
