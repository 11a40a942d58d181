"""The Dockerfile's hardening, read statically (no container engine is needed to run this).

Building the image is left to `make image`; what can rot silently is checked here: the base is
pinned, the final stage has no toolchain and runs as a numeric non-root user, the command is one
`serve` accepts, and the health check is valid Python.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from click.testing import CliRunner

from webhook.cli.main import main

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_the_base_image_is_pinned_to_an_exact_python_3_11_slim_tag() -> None:
    default = next(rest for word, rest in instructions() if word == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", default)
    stages = [rest for word, rest in instructions() if word == "FROM"]
    assert len(stages) == 2 and all(s.startswith("${PYTHON_IMAGE}") for s in stages)


def test_the_final_stage_installs_nothing_and_copies_only_the_environment() -> None:
    final = final_stage()
    commands = " ".join(rest for word, rest in final if word == "RUN")
    for tool in ("pip ", "apt-get", "gcc", "build-essential", "curl", "wget"):
        assert tool not in commands
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies == ["--from=build /opt/egress-guard /opt/egress-guard"]


def test_it_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    from webhook.deploy.objects import RUN_AS

    assert int(uid) == RUN_AS  # the Deployment's runAsUser


def test_the_command_is_one_serve_accepts_with_the_worker_tmp_dir_in_shared_memory() -> None:
    entrypoint = json.loads(next(rest for word, rest in final_stage() if word == "ENTRYPOINT"))
    command = json.loads(next(rest for word, rest in final_stage() if word == "CMD"))
    assert entrypoint == ["egress-guard"]
    assert command[0] == "serve"
    assert command[command.index("--worker-tmp-dir") + 1] == "/dev/shm"
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output


def test_the_health_check_is_valid_python_against_healthz() -> None:
    healthcheck = next(rest for word, rest in final_stage() if word == "HEALTHCHECK")
    exec_form = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert exec_form[:2] == ["python", "-c"]
    ast.parse(exec_form[2])
    assert "/healthz" in exec_form[2]


def test_the_build_context_holds_only_what_the_image_needs() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    for needed in ("!pyproject.toml", "!constraints.txt", "!README.md", "!webhook/"):
        assert needed in lines
