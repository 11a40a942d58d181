"""`egress-guard report`: the inventory against the local API server, in every format, and the
HTML page in a real headless Chromium (renders without console errors, fetches nothing)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import PROFILE, namespace, ns_labels, placed, workload
from click.testing import CliRunner, Result
from local_apiserver import LocalApiServer

from webhook.cli.main import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = os.environ.get("EGRESS_GUARD_REQUIRE_BROWSER") == "1"
"""Set by CI, which installs Chromium: there the browser tests must run, never skip."""


def report(kubeconfig: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["report", "--kubeconfig", str(kubeconfig), *args])


@pytest.fixture
def cluster(local_api: LocalApiServer) -> LocalApiServer:
    local_api.seed(
        namespace("payments", ns_labels("enforce")),
        namespace("sandbox", ns_labels("audit")),
        namespace("free", {}),
        placed(workload("Deployment", {PROFILE: "stripe"}, name="api"), "payments"),
        placed(workload("CronJob", {PROFILE: "internal"}, name="ledger-sync"), "payments"),
        placed(workload("Deployment", {}, name="loose"), "sandbox"),
        placed(workload("Deployment", {}, name="wild"), "free"),
    )
    return local_api


def workloads(outcome: Result) -> dict[str, dict[str, Any]]:
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.output)
    return {f"{w['namespace']}/{w['kind']}/{w['name']}": w for w in document["workloads"]}


class TestInventory:
    def test_every_workload_of_the_managed_namespaces(
        self, cluster: LocalApiServer, kubeconfig: Path
    ) -> None:
        found = workloads(report(kubeconfig, "-o", "json"))
        assert sorted(found) == [
            "payments/CronJob/ledger-sync",
            "payments/Deployment/api",
            "sandbox/Deployment/loose",
        ]
        api = found["payments/Deployment/api"]
        assert (api["mode"], api["inject"], api["profile"]) == (
            "enforce",
            "networkpolicy",
            "stripe",
        )
        assert "34.210.129.0/24:443" in api["reaches"]
        assert "api.stripe.com (host: through the proxy)" in api["reaches"]
        assert api["ifEnforced"] == "allowed"
        loose = found["sandbox/Deployment/loose"]
        assert loose["profile"] is None and loose["networkPolicies"] == "-"
        assert 'Deployment "loose" has no egress profile' in loose["ifEnforced"]
        ledger = found["payments/CronJob/ledger-sync"]
        assert ledger["reaches"] == ["pods app=ledger in namespaces team=payments:8080"]

    def test_all_namespaces_shows_the_unmanaged_ones_as_such(
        self, cluster: LocalApiServer, kubeconfig: Path
    ) -> None:
        found = workloads(report(kubeconfig, "-A", "-o", "json"))
        assert found["free/Deployment/wild"]["mode"] == "not managed"
        one = workloads(report(kubeconfig, "-A", "-n", "free", "-o", "json"))
        assert list(one) == ["free/Deployment/wild"]

    def test_generated_policies_missing_then_in_place_then_drifted(
        self, cluster: LocalApiServer, kubeconfig: Path
    ) -> None:
        state = workloads(report(kubeconfig, "-o", "json"))["payments/Deployment/api"]
        assert state["networkPolicies"].startswith("missing: egress-guard-default-deny")
        CliRunner().invoke(
            main, ["reconcile", "--once", "--no-leader-elect", "--kubeconfig", str(kubeconfig)]
        )
        state = workloads(report(kubeconfig, "-o", "json"))["payments/Deployment/api"]
        assert state["networkPolicies"] == "in place"
        live = cluster.get("networkpolicies", "egress-guard-profile-stripe", "payments")
        assert live is not None
        live["spec"]["egress"] = [{}]
        rt = cluster.resource("networkpolicies")
        cluster.store.update(
            rt, "payments", live["metadata"]["name"], live, dry_run=False, strict=False
        )
        state = workloads(report(kubeconfig, "-o", "json"))["payments/Deployment/api"]
        assert state["networkPolicies"] == "drifted: egress-guard-profile-stripe"

    def test_what_a_controller_owns_is_its_owners(
        self, cluster: LocalApiServer, kubeconfig: Path
    ) -> None:
        pod = placed(workload("Pod", {PROFILE: "stripe"}, name="api-5d8f-abcde"), "payments")
        pod["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "api-5d8f",
                "uid": "5b7f2a52-52d8-4a3e-9b2c-4f2b1c0de001",
                "controller": True,
            }
        ]
        cluster.seed(pod)
        assert "payments/Pod/api-5d8f-abcde" not in workloads(report(kubeconfig, "-o", "json"))

    def test_calls_follow_kinds_and_pages_not_workloads(
        self, cluster: LocalApiServer, kubeconfig: Path
    ) -> None:
        cluster.seed(
            *(
                placed(workload("Deployment", {PROFILE: "stripe"}, name=f"d{n}"), "payments")
                for n in range(60)
            )
        )
        cluster.reset_calls()
        report(kubeconfig, "-o", "json")
        assert {call.verb for call in cluster.calls} == {"list"}
        assert len(cluster.calls) == 2 + 8  # namespaces, generated policies, 8 workload kinds

    def test_table_yaml_and_markdown(self, cluster: LocalApiServer, kubeconfig: Path) -> None:
        table = report(kubeconfig).output.splitlines()
        assert table[0].split()[:5] == ["NAMESPACE", "WORKLOAD", "MODE", "INJECT", "PROFILE"]
        assert any(line.startswith("sandbox ") and "no egress profile" in line for line in table)
        assert (
            table[-1]
            == "3 workloads in 2 namespaces; 1 would be refused if their namespace enforced"
        )
        as_json = json.loads(report(kubeconfig, "-o", "json").output)
        assert yaml.safe_load(report(kubeconfig, "-o", "yaml").output) == as_json
        markdown = report(kubeconfig, "-o", "markdown").output
        assert "| payments | enforce | networkpolicy | 2 | 0 |" in markdown
        assert "| sandbox | audit | none | 1 | 1 |" in markdown

    def test_a_cluster_that_cannot_be_read_is_exit_2(
        self, local_api: LocalApiServer, kubeconfig: Path
    ) -> None:
        local_api.go_down()
        outcome = report(kubeconfig)
        local_api.come_up()
        assert outcome.exit_code == 2
        assert "reading the cluster failed" in outcome.output


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[str, list[str], Path]]:
    """A loopback HTTP server for tmp_path that records every path asked for."""
    handler = lambda *a, **k: QuietHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.requests, tmp_path  # type: ignore[attr-defined]
    server.shutdown()


def open_in_chromium(url: str, profile: Path, *extra: str) -> tuple[str, str]:
    """(the DOM as rendered, what Chromium logged) for a page, headless."""
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail("Chromium is required here (EGRESS_GUARD_REQUIRE_BROWSER=1) and missing")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        *extra,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout, done.stderr


def console_messages(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


class TestHtmlPage:
    def test_renders_without_console_errors_and_fetches_nothing(
        self,
        cluster: LocalApiServer,
        kubeconfig: Path,
        page_server: tuple[str, list[str], Path],
    ) -> None:
        base, requests, directory = page_server
        (directory / "report.html").write_text(report(kubeconfig, "-A", "-o", "html").output)
        dom, log = open_in_chromium(f"{base}/report.html", directory / "profile", "--dump-dom")
        assert "Which profiles reach what" in dom
        assert "stripe (1 workload)" in dom  # the picture's text, rendered in the SVG
        assert dom.count("<tr>") >= 3 + 4  # namespaces and workloads
        assert console_messages(log) == []
        assert requests == ["/report.html"]

    def test_the_console_check_sees_an_error_when_there_is_one(
        self, page_server: tuple[str, list[str], Path]
    ) -> None:
        """The check above could not fail if Chromium's console did not reach its log."""
        base, requests, directory = page_server
        (directory / "broken.html").write_text(
            '<!DOCTYPE html><link rel="icon" href="data:,"><img src="/missing.png">'
            "<script>undefinedFunction()</script>"
        )
        _, log = open_in_chromium(f"{base}/broken.html", directory / "profile", "--dump-dom")
        assert any("undefinedFunction" in line for line in console_messages(log))
        assert "/missing.png" in requests

    def test_everything_shown_is_escaped(self, local_api: LocalApiServer, kubeconfig: Path) -> None:
        local_api.seed(
            namespace("payments", ns_labels("enforce")),
            placed(workload("Deployment", {PROFILE: "<b>x</b>"}, name="api"), "payments"),
        )
        page = report(kubeconfig, "-o", "html").output
        assert "<b>x</b>" not in page
        assert "&lt;b&gt;x&lt;/b&gt;" in page
