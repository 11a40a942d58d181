"""Parity: for every workload of the corpus, `egress-guard check` gives the answer the running
server gives over HTTPS for the same object (mutating webhook first for Pods, as the API server
calls them), under the same namespace labels."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from builders import CORPUS, apply_patch, review_document
from click.testing import CliRunner
from running_server import RunningServer, running_server

from webhook.cli.input_files import InputObject, find_files, read_inputs
from webhook.cli.main import main

pytestmark = [pytest.mark.e2e, pytest.mark.corpus]

WORKLOADS = CORPUS / "workloads"
DEFAULT_NAMESPACE = "demo"
EXEMPT = {"kube-system", "kube-public", "kube-node-lease", "egress-guard"}
LABEL_CHOICES = itertools.cycle(
    [
        {"mode": "warn"},
        {"mode": "audit"},
        {"mode": "enforce", "inject": "proxy"},
        {"mode": "enforce"},
        {"mode": "warn", "inject": "all"},
        {"mode": "audit", "inject": "networkpolicy"},
    ]
)


def _valid_namespace(name: Any) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 63
        and name == name.lower()
        and name.replace("-", "").isalnum()
        and name[0].isalnum()
        and name[-1].isalnum()
    )


@pytest.fixture(scope="module")
def corpus() -> list[InputObject]:
    if not WORKLOADS.is_dir():
        pytest.skip(f"the shared corpus is not present at {WORKLOADS}")
    files, _ = find_files([str(WORKLOADS)])
    return read_inputs(files).manifests


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory, corpus: list[InputObject]) -> Path:
    """The example policy with a `namespaces` table that covers every mode and inject value.

    Namespaces the corpus defines with a Namespace object are left out: `check` takes their
    labels from the object (none of them has egress-guard labels), the server from this table.
    """
    defined = {m.metadata.get("name") for m in corpus if m.kind == "Namespace"}
    used = {m.metadata.get("namespace") for m in corpus} - defined - EXEMPT
    # the corpus's pods carry no profile: `proxy` gives them the proxy variables (`all` would
    # not, since only a profile that uses the proxy has a route to it there)
    table: dict[str, dict[str, str]] = {DEFAULT_NAMESPACE: {"mode": "enforce", "inject": "proxy"}}
    for name in sorted(n for n in used if _valid_namespace(n) and n != DEFAULT_NAMESPACE):
        table[name] = next(LABEL_CHOICES)
    example = Path(__file__).resolve().parents[1] / "webhook" / "data" / "policy.example.yaml"
    document = yaml.safe_load(example.read_text())
    document["namespaces"] = table
    path = tmp_path_factory.mktemp("parity") / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def server(policy_file: Path) -> Iterator[RunningServer]:
    with running_server(policy_file.parent, "--config", str(policy_file)) as running:
        yield running


@pytest.fixture(scope="module")
def checked(policy_file: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        main,
        [
            "check",
            "-f",
            str(WORKLOADS),
            "--config",
            str(policy_file),
            "--namespace",
            DEFAULT_NAMESPACE,
            "-o",
            "json",
            "--show-generated",
        ],
    )
    assert result.exit_code == 1, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return found


def _key(source: dict[str, Any]) -> tuple[str, int, int, int | None]:
    return (source["file"], source["line"], source["document"], source.get("item"))


def _answer(response: dict[str, Any]) -> dict[str, Any]:
    status = response.get("status") or {}
    return {
        "allowed": response["allowed"],
        "code": status.get("code", 200),
        "message": status.get("message", ""),
        "warnings": response.get("warnings", []),
        "auditAnnotations": response.get("auditAnnotations"),
    }


def _server_answer(
    server: RunningServer, conn: Any, obj: dict[str, Any], namespace: str, uid: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The API server's sequence: mutate (Pods), apply the patch, validate the result."""
    warnings: list[str] = []
    patched: dict[str, Any] | None = None
    if obj["kind"] == "Pod":
        status, body = server.post(
            conn, "/mutate", review_document(obj, namespace=namespace, uid=uid)
        )
        assert status == 200
        mutation = body["response"]
        if not mutation["allowed"]:
            return _answer(mutation), None
        warnings = mutation.get("warnings", [])
        if "patch" in mutation:
            patched = apply_patch(obj, orjson.loads(base64.b64decode(mutation["patch"])))
    status, body = server.post(
        conn, "/validate", review_document(patched or obj, namespace=namespace, uid=uid)
    )
    assert status == 200
    answer = _answer(body["response"])
    answer["warnings"] = [*warnings, *answer["warnings"]]
    return answer, patched


def test_check_answers_as_the_running_server_for_every_corpus_workload(
    corpus: list[InputObject], checked: list[dict[str, Any]], server: RunningServer
) -> None:
    objects = {_key(m.source.as_dict()): m.obj for m in corpus}
    assert len(checked) > 400, "the corpus holds several hundred workloads"
    mismatches: list[str] = []
    with contextlib.closing(server.connection()) as conn:
        for index, item in enumerate(checked):
            obj = objects[_key(item["source"])]
            answer, patched = _server_answer(server, conn, obj, item["namespace"], f"p-{index}")
            ours = {
                "allowed": item["allowed"],
                "code": item["code"],
                "message": item["message"],
                "warnings": item["warnings"],
                "auditAnnotations": item.get("auditAnnotations"),
            }
            if ours != answer or patched != item["generated"]["patchedObject"]:
                mismatches.append(f"{item['source']}: check {ours} != server {answer}")
    assert not mismatches, f"{len(mismatches)} differ, e.g.:\n" + "\n".join(mismatches[:5])
    verdicts = {item["verdict"] for item in checked}
    assert verdicts >= {"allowed", "denied", "warned", "audited"}, "every verdict is covered"
    assert any(item["injected"]["proxyEnv"] for item in checked if item["kind"] == "Pod")
