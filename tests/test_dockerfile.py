"""The Dockerfile's hardening, read statically (no container engine is needed to run this).

Building and running the image is `make image-test` (tools/image_test); what can rot silently is
checked here: the base is pinned and nothing else is fetched from a registry, the build tools are
pinned, pip's settings reach the build only as secrets, the final stage has no toolchain and runs
as a numeric non-root user, the command is one `serve` accepts, and the health check is the
module that follows `serve`'s address.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.version import Version

from webhook.cli.main import main
from webhook.serving import healthcheck

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


def build_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[:last_from]


def image_env() -> dict[str, str]:
    pairs = [rest for word, rest in final_stage() if word == "ENV"]
    return dict(pair.split("=", 1) for rest in pairs for pair in shlex.split(rest))


PIP_INVOCATION = re.compile(r"(\bpip3?(\.\d+)? +(install|wheel|download)|-m +pip\b)")


def test_the_base_image_is_pinned_to_an_exact_python_3_11_slim_tag() -> None:
    default = next(rest for word, rest in instructions() if word == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", default)
    stages = [rest for word, rest in instructions() if word == "FROM"]
    assert len(stages) == 2 and all(s.startswith("${PYTHON_IMAGE}") for s in stages)


def test_the_final_stage_installs_nothing_and_copies_only_the_environment() -> None:
    final = final_stage()
    commands = " ".join(rest for word, rest in final if word == "RUN")
    assert not PIP_INVOCATION.search(commands)
    for tool in ("apt-get", "gcc", "build-essential", "curl", "wget"):
        assert tool not in commands
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies == ["--from=build /opt/egress-guard /opt/egress-guard"]


def test_no_frontend_image_is_fetched() -> None:
    """A `# syntax=` directive makes BuildKit pull a frontend from Docker Hub even when the base
    comes from a mirror; the built-in frontend has everything this file uses."""
    assert not re.search(r"^#\s*syntax\s*=", DOCKERFILE, re.M | re.I)


def test_the_server_venv_never_holds_pip_and_the_base_loses_its_own() -> None:
    runs = " ".join(rest for word, rest in build_stage() if word == "RUN")
    assert "python -m venv --without-pip /opt/egress-guard" in runs
    installs = [part for part in runs.split("&&") if re.search(r"\bpip\b.* install ", part)]
    assert len(installs) == 3
    for install in installs:  # into the build tools' venv, or into the server's from outside
        assert install.strip().startswith("/opt/build/bin/pip ")
        assert "-r build-requirements.txt" in install or (
            "--python /opt/egress-guard/bin/python install" in install
        )
    final = " ".join(rest for word, rest in final_stage() if word == "RUN")
    for removed in (
        "/usr/local/lib/python3.*/site-packages/*",
        "/usr/local/bin/pip3",
        "/usr/local/bin/wheel",
        "/usr/local/lib/python3.*/ensurepip/_bundled",
        "/usr/share/python-wheels",
    ):
        assert removed in final


def test_the_build_tools_are_pinned_and_cover_the_build_backend() -> None:
    """pip builds with the pinned hatchling (no build isolation fetching the latest one)."""
    lines = [
        line
        for line in (REPO / "build-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    pins = {Requirement(line).name: Requirement(line) for line in lines}
    for pin in pins.values():
        assert re.fullmatch(r"==[\w.]+", str(pin.specifier)), pin
    assert {"pip", "hatchling"} <= set(pins)
    pyproject = (REPO / "pyproject.toml").read_text()
    backend = re.search(r'requires = \["(hatchling[^"]*)"\]', pyproject)
    assert backend is not None
    wanted = Requirement(backend.group(1))
    pinned = Version(str(pins["hatchling"].specifier).removeprefix("=="))
    assert wanted.specifier.contains(pinned)
    runs = [rest for word, rest in build_stage() if word == "RUN"]
    assert any("--no-deps -r build-requirements.txt" in run for run in runs)
    assert any("--no-deps --no-build-isolation" in run for run in runs)


def test_pip_settings_reach_the_build_only_as_secrets() -> None:
    """The index and its certificate bundle are build secrets: mounted for a RUN, never a layer,
    an ARG (kept in the history) or an ENV of the final image."""
    for word, rest in build_stage():
        if word == "RUN" and re.search(r"pip .*install (?!--no-deps /tmp/dist)", rest):
            assert "--mount=type=secret,id=pip.conf" in rest
            assert "--mount=type=secret,id=pip-cert" in rest
        if word in ("ARG", "ENV"):
            assert not re.search(r"INDEX|CERT=|TRUSTED|PROXY", rest), rest
    assert not any(key.startswith("PIP_") for key in image_env())


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


def test_the_health_check_asks_where_serve_says_it_listens() -> None:
    instruction = next(rest for word, rest in final_stage() if word == "HEALTHCHECK")
    exec_form = json.loads(instruction[instruction.index("CMD") + 3 :].strip())
    assert exec_form == ["python", "-m", healthcheck.__name__]
    env = image_env()
    assert env[healthcheck.FILE_ENV].startswith("/tmp/")
    assert healthcheck.target_url(env) == "https://127.0.0.1:8443/healthz"  # before serve starts


def test_a_plain_docker_run_generates_certificates_where_it_may_write() -> None:
    """Without certificates, serve generates them in the image's cert dir: under /tmp, writable
    in a plain `docker run` and the Deployment's emptyDir on its read-only root. The Deployment
    names its own cert dir: the Secret's mount."""
    env = image_env()
    assert env["EGRESS_GUARD_CERT_DIR"].startswith("/tmp/")
    deployment = next(
        d
        for d in yaml.safe_load_all((REPO / "deploy" / "deployment.yaml").read_text())
        if d and d["kind"] == "Deployment"
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "emptyDir" in mounts["/tmp"]
    set_env = {e["name"]: e.get("value") for e in container["env"]}
    assert "secret" in mounts[set_env["EGRESS_GUARD_CERT_DIR"]]


def test_the_build_context_holds_only_what_the_image_needs() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    needed_files = ("!build-requirements.txt", "!pyproject.toml", "!constraints.txt", "!README.md")
    for needed in (*needed_files, "!webhook/"):
        assert needed in lines


def test_every_setting_the_image_sets_is_one_serve_reads() -> None:
    from webhook.config.settings import ServeSettings

    for name in image_env():
        if name.startswith("EGRESS_GUARD_"):
            field = name.removeprefix("EGRESS_GUARD_").lower()
            assert field in ServeSettings.model_fields, f"{name} is read by nobody"
