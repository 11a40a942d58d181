"""`make image-test`: build the image and run it as deploy/ runs it, as a new user runs it, and
with the faults a user meets; exit 1 when any check fails.

    python -m tools.image_test                 # build, run, check (2 minutes cold, 1 warm)
    python -m tools.image_test --standin       # build on the local stand-in base even if the
                                               # public one can be pulled
    python -m tools.image_test --keep          # leave the containers for a look afterwards

Docker is installed (Debian's docker.io) and dockerd started when missing. When the Dockerfile's
PYTHON_IMAGE cannot be pulled, the image is built on a stand-in base made from Debian packages
(tools/image_test/standin.py), and the run says so. pip inside the build uses this machine's index
settings and certificate bundle, passed as build secrets (tools/image_test/pip_settings.py).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tools.image_test import contents
from tools.image_test.engine import Docker, docker_engine, pull, remove_containers
from tools.image_test.pip_settings import build_secrets, describe
from tools.image_test.report import STARTED, Failed, Tally, note, run, step
from tools.image_test.standin import build_standin
from webhook import __version__

REPO = Path(__file__).resolve().parents[2]
PREFIX = "egress-guard-image-test"
HEALTHY_WITHIN_S = 60.0
SERVING_WITHIN_S = 30.0
FAULT_EXIT_WITHIN_S = 30.0
REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "image-test",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "operation": "CREATE",
        "namespace": "payments",
        "name": "api",
        "object": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api"},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "api", "image": "example/api:1"}]},
                }
            },
        },
    },
}


def default_base() -> str:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    if match is None:
        raise Failed("the Dockerfile names no PYTHON_IMAGE")
    return match.group(1)


# ---------------------------------------------------------------------------------------- build


def build(docker: Docker, tag: str, base: str, scratch: Path) -> float:
    secrets = build_secrets()
    describe(secrets)
    started = time.monotonic()
    docker(
        "build",
        "--progress=plain",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        *secrets.docker_args(scratch),
        "-t",
        tag,
        str(REPO),
    )
    return time.monotonic() - started


# ------------------------------------------------------------------------------------- running


def deployment_container() -> dict[str, Any]:
    documents = yaml.safe_load_all((REPO / "deploy" / "deployment.yaml").read_text())
    deployment = next(d for d in documents if d and d.get("kind") == "Deployment")
    return dict(deployment)


def policy_text() -> str:
    documents = yaml.safe_load_all((REPO / "deploy" / "configmap.yaml").read_text())
    configmap = next(d for d in documents if d and d.get("kind") == "ConfigMap")
    return str(configmap["data"]["policy.yaml"])


def make_certs(out: Path, *, owner: int, group: int, mode: int | None) -> Path:
    """Certificates as `certs generate` makes them on this machine (keys 0600), then owned as
    asked, and with `mode` every file moded alike (a Secret volume's defaultMode)."""
    run(
        [
            sys.executable,
            "-m",
            "webhook",
            "certs",
            "generate",
            "--out",
            str(out),
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ],
        quiet=True,
    )
    out.chmod(0o755)
    for name in ("tls.crt", "tls.key", "ca.crt"):
        os.chown(out / name, owner, group)
        if mode is not None:
            (out / name).chmod(mode)
    return out


def as_deployed_args(scratch: Path, image: str) -> tuple[list[str], list[str]]:
    """`docker run` options and arguments that reproduce deploy/deployment.yaml's pod."""
    deployment = deployment_container()
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = container["securityContext"]
    options = [
        "--user",
        f"{security['runAsUser']}:{security['runAsGroup']}",
        "--group-add",
        str(pod["securityContext"]["fsGroup"]),
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        container["resources"]["limits"]["memory"].replace("Mi", "m"),
    ]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    assert not security["allowPrivilegeEscalation"]
    options.append("--read-only")
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit", "64Mi").replace("Mi", "m")
            options += ["--tmpfs", f"{mount['mountPath']}:rw,size={size},mode=1777"]
        elif "configMap" in volume:
            directory = scratch / "policy"
            directory.mkdir(mode=0o755, exist_ok=True)
            (directory / "policy.yaml").write_text(policy_text())
            (directory / "policy.yaml").chmod(0o644)
            options += ["-v", f"{directory}:{mount['mountPath']}:ro"]
        elif "secret" in volume:  # defaultMode 0440, group fsGroup: as the kubelet writes it
            certs = make_certs(
                scratch / "certs",
                owner=0,
                group=int(pod["securityContext"]["fsGroup"]),
                mode=int(volume["secret"]["defaultMode"]),
            )
            options += ["-v", f"{certs}:{mount['mountPath']}:ro"]
    namespace = deployment["metadata"]["namespace"]
    for variable in container["env"]:
        value = variable.get("value", namespace)  # valueFrom: metadata.namespace
        if variable["name"] == "EGRESS_GUARD_CLUSTER":
            value = "none"  # no cluster here: the policy's embedded namespace modes
        options += ["-e", f"{variable['name']}={value}"]
    port = container["ports"][0]["containerPort"]
    options += ["-p", f"127.0.0.1::{port}"]
    return options, list(container["args"])


def start(docker: Docker, name: str, image: str, options: list[str], args: list[str]) -> None:
    docker("run", "-d", "--name", f"{PREFIX}-{name}", *options, image, *args, quiet=True)


def inspect(docker: Docker, name: str, template: str) -> str:
    return docker.capture("inspect", "-f", template, f"{PREFIX}-{name}").stdout.strip()


def logs(docker: Docker, name: str) -> str:
    done = docker.capture("logs", f"{PREFIX}-{name}")
    return done.stdout + done.stderr


def host_port(docker: Docker, name: str, port: int) -> int:
    mapped = docker.capture("port", f"{PREFIX}-{name}", f"{port}/tcp").stdout.split()
    return int(mapped[0].rsplit(":", 1)[1]) if mapped else 0


def https(
    port: int, path: str, ca: Path, body: Any = None, timeout: float = 5.0
) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    with contextlib.closing(conn):
        if body is None:
            conn.request("GET", path)
        else:
            headers = {"Content-Type": "application/json"}
            conn.request("POST", path, body=json.dumps(body), headers=headers)
        reply = conn.getresponse()
        data = reply.read()
    try:
        return reply.status, json.loads(data)
    except ValueError:
        return reply.status, data.decode(errors="replace")


def wait_serving(docker: Docker, name: str, port: int, ca: Path) -> str | None:
    """None once /healthz answers over TLS trusting `ca`; else why not."""
    deadline = time.monotonic() + SERVING_WITHIN_S
    problem = "not started"
    while time.monotonic() < deadline:
        if inspect(docker, name, "{{.State.Running}}") != "true":
            return f"the container stopped: {logs(docker, name).strip()[-500:]}"
        try:
            status, _ = https(port, "/healthz", ca, timeout=2)
            if status == 200:
                return None
            problem = f"/healthz answered {status}"
        except (OSError, http.client.HTTPException) as err:
            problem = str(err)
        time.sleep(0.3)
    return problem


def wait_health(docker: Docker, name: str) -> tuple[str, float]:
    """The HEALTHCHECK's verdict: `healthy` within HEALTHY_WITHIN_S, else the last status."""
    started = time.monotonic()
    status = ""
    while time.monotonic() - started < HEALTHY_WITHIN_S:
        status = inspect(docker, name, "{{if .State.Health}}{{.State.Health.Status}}{{end}}")
        if status in ("healthy", "unhealthy"):
            break
        time.sleep(0.5)
    return status, time.monotonic() - started


def health_log(docker: Docker, name: str) -> str:
    return inspect(docker, name, "{{range .State.Health.Log}}{{.Output}}{{end}}")


def copy_out(docker: Docker, name: str, path: str, to: Path) -> Path:
    """A file from a running container, once it is there."""
    deadline = time.monotonic() + SERVING_WITHIN_S
    done = docker.capture("exec", f"{PREFIX}-{name}", "cat", path)
    while done.returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.3)
        done = docker.capture("exec", f"{PREFIX}-{name}", "cat", path)
    to.write_text(done.stdout)
    return to


def memory_mib(docker: Docker, name: str) -> str:
    done = docker.capture("stats", "--no-stream", "--format", "{{.MemUsage}}", f"{PREFIX}-{name}")
    return done.stdout.split("/")[0].strip()


def wait_exit(docker: Docker, name: str, within: float) -> int | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if inspect(docker, name, "{{.State.Running}}") == "false":
            return int(inspect(docker, name, "{{.State.ExitCode}}"))
        time.sleep(0.3)
    return None


# -------------------------------------------------------------------------------------- checks


def check_contents(docker: Docker, image: str, base: str, tally: Tally) -> None:
    step("what the image holds")
    version = docker("run", "--rm", image, "--version", quiet=True).strip()
    tally.check(version == f"egress-guard, version {__version__}", "--version", version)
    found = contents.scan(docker, image)
    for kind, paths in found.items():
        tally.check(not paths, f"no {kind} in the image", ", ".join(paths[:5]) or "none found")
    config = json.loads(docker.capture("image", "inspect", image).stdout)[0]
    env = config["Config"]["Env"]
    tally.check(
        not any(e.startswith("PIP_") for e in env), "no pip setting in the image's environment"
    )
    history = docker.capture("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    tally.check(
        "/run/secrets" not in history and "pip.conf" not in history,
        "no build secret in the image's history",
    )
    tally.check(config["Config"]["User"] == "65532:65532", "runs as 65532:65532")
    size = int(config["Size"])
    base_size = int(json.loads(docker.capture("image", "inspect", base).stdout)[0]["Size"])
    added = (size - base_size) / 1e6
    tally.figure("image size", f"{size / 1e6:.1f} MB ({added:.1f} MB on the base)")
    tally.figure("base", f"{base} ({base_size / 1e6:.1f} MB)")
    venv = docker(
        "run", "--rm", "--entrypoint", "du", image, "-sk", "/opt/egress-guard", quiet=True
    )
    tally.figure("/opt/egress-guard", f"{int(venv.split()[0]) / 1024:.1f} MiB")


def check_as_deployed(docker: Docker, image: str, scratch: Path, tally: Tally) -> None:
    step("as deploy/ runs it: uid 65532, read-only root, tmpfs /tmp, no capabilities")
    options, args = as_deployed_args(scratch, image)
    note(f"docker run {' '.join(options)} {image} {' '.join(args)}")
    start(docker, "deployed", image, options, args)
    port = host_port(docker, "deployed", 8443)
    ca = scratch / "certs" / "ca.crt"
    problem = wait_serving(docker, "deployed", port, ca)
    serving = tally.check(problem is None, "/healthz answers (mounted CA)", problem or "")
    if not serving:
        return
    status, _ = https(port, "/readyz", ca)
    tally.check(status == 200, "/readyz answers 200", str(status))
    status, body = https(port, "/validate", ca, REVIEW)
    response = body.get("response", {}) if isinstance(body, dict) else {}
    message = response.get("status", {}).get("message", "")
    tally.check(
        status == 200 and response.get("uid") == "image-test" and response.get("allowed") is False,
        "/validate denies a Deployment without a profile",
        message[:90],
    )
    health, waited = wait_health(docker, "deployed")
    tally.check(health == "healthy", "HEALTHCHECK healthy", f"{health} after {waited:.0f} s")
    tally.figure("memory, serving (2 workers)", memory_mib(docker, "deployed"))
    stopped = time.monotonic()
    docker("stop", "-t", "40", f"{PREFIX}-deployed", quiet=True)
    code = int(inspect(docker, "deployed", "{{.State.ExitCode}}"))
    text = logs(docker, "deployed")
    tally.check(
        code == 0 and "Traceback" not in text,
        "stops cleanly on SIGTERM",
        f"exit {code} in {time.monotonic() - stopped:.1f} s",
    )


def check_plain_run(docker: Docker, image: str, scratch: Path, tally: Tally) -> None:
    step("as a new user runs it: `docker run -p 8443:8443 image`, and with `serve --port 9443`")
    start(docker, "plain", image, ["-p", "127.0.0.1::8443"], [])
    start(
        docker,
        "port",
        image,
        ["--read-only", "--tmpfs", "/tmp", "-p", "127.0.0.1::9443"],
        ["serve", "--port", "9443", "--worker-tmp-dir", "/dev/shm"],
    )
    for name, port in (("plain", 8443), ("port", 9443)):
        mapped = host_port(docker, name, port)
        ca = copy_out(docker, name, "/tmp/egress-guard/tls/ca.crt", scratch / f"{name}-ca.crt")
        problem = wait_serving(docker, name, mapped, ca)
        tally.check(
            problem is None,
            f"{name}: serves with a generated certificate",
            problem or f"port {port}",
        )
        tally.check(
            "trust /tmp/egress-guard/tls/ca.crt" in logs(docker, name),
            f"{name}: says where the CA is",
        )
    for name in ("plain", "port"):
        health, waited = wait_health(docker, name)
        tally.check(
            health == "healthy",
            f"{name}: HEALTHCHECK healthy",
            f"{health} after {waited:.0f} s; {health_log(docker, name).strip()[:120]}",
        )


def check_faults(docker: Docker, image: str, scratch: Path, tally: Tally) -> None:
    step("faults a user meets: a key root alone may read, a read-only root without /tmp")
    options, args = as_deployed_args(scratch, image)
    root_only = make_certs(scratch / "root-only", owner=0, group=0, mode=None)
    options = [o.replace(f"{scratch / 'certs'}:", f"{root_only}:") for o in options]
    start(docker, "unreadable-key", image, options, args)
    start(docker, "read-only", image, ["--read-only"], [])
    for name, expected in (
        ("unreadable-key", "tls.key: permission denied"),
        ("read-only", "none can be generated there"),
    ):
        code = wait_exit(docker, name, FAULT_EXIT_WITHIN_S)
        text = logs(docker, name).strip()
        lines = text.splitlines()
        tally.check(
            code == 2 and len(lines) == 1 and expected in text,
            f"{name}: refuses to start with one line",
            text[:160] if code is not None else "still running",
        )


# ---------------------------------------------------------------------------------------- main


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.image_test",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tag", default=f"egress-guard:{__version__}")
    parser.add_argument("--base", help="PYTHON_IMAGE to build on [default: the Dockerfile's]")
    parser.add_argument("--standin", action="store_true", help="build on the local stand-in base")
    parser.add_argument("--rebuild-base", action="store_true", help="debootstrap the stand-in anew")
    parser.add_argument("--keep", action="store_true", help="leave the containers behind")
    return parser.parse_args()


def containers() -> list[str]:
    return [f"{PREFIX}-{n}" for n in ("deployed", "plain", "port", "unreadable-key", "read-only")]


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    directory.chmod(0o755)  # the container's uid reads the mounted files below it
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    options = arguments()
    tally = Tally()
    try:
        step("Docker")
        docker = docker_engine()
        remove_containers(docker, containers())
        step("base image")
        base = options.base or default_base()
        if options.standin or not pull(docker, base):
            note(f"{base} is out of reach: building on a local stand-in base instead")
            base = build_standin(docker, rebuild=options.rebuild_base)
            tally.figures["base is a stand-in"] = "yes (debootstrap bookworm, python3.11)"
        note(f"base: {base}")
        with scratch_dir() as scratch:
            step(f"building {options.tag}")
            seconds = build(docker, options.tag, base, scratch)
            tally.figure("build time", f"{seconds:.0f} s")
            try:
                check_contents(docker, options.tag, base, tally)
                check_as_deployed(docker, options.tag, scratch, tally)
                check_plain_run(docker, options.tag, scratch, tally)
                check_faults(docker, options.tag, scratch, tally)
            finally:
                if not options.keep:
                    remove_containers(docker, containers())
    except (Failed, subprocess.TimeoutExpired) as err:
        tally.failed.append(str(err))
        note(f"FAIL  {err}")
    step(f"summary ({time.monotonic() - STARTED:.0f} s)")
    for name, value in tally.figures.items():
        note(f"{name}: {value}")
    note(f"{len(tally.passed)} checks passed, {len(tally.failed)} failed")
    for failure in tally.failed:
        note(f"FAIL  {failure}")
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
