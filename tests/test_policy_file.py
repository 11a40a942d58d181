"""The policy file: the example loads; a bad file is an error naming file, line and field."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from webhook.config.policy_file import PolicyFileError, PolicyStore, load_policy, parse_policy
from webhook.core.policy import Inject, Mode

REPO = Path(__file__).resolve().parents[1]

VALID = textwrap.dedent(
    """\
    labelPrefix: example.com
    profiles:
      none: {}
      db:
        allow:
          - cidr: 10.0.0.0/8
            except: [10.1.0.0/16]
            ports: [5432, {port: 53, protocol: UDP}, {port: 8000, endPort: 8100}]
    """
)


def test_the_example_policy_loads_with_every_section(tmp_path: Path) -> None:
    policy = load_policy(None)
    assert policy.label_prefix == "egress-guard.io"
    assert policy.profile_label == "egress-guard.io/profile"
    assert set(policy.profiles) == {"none", "stripe", "internal", "web-via-proxy"}
    assert policy.proxy is not None and policy.proxy.port == 3128
    assert policy.namespaces["payments"].mode is Mode.ENFORCE
    assert policy.namespaces["payments"].inject is Inject.NETWORKPOLICY
    assert "kube-system" in policy.exempt


def test_the_shipped_example_is_the_embedded_default() -> None:
    embedded = (REPO / "webhook" / "data" / "policy.example.yaml").read_text()
    assert (REPO / "deploy" / "policy.example.yaml").read_text() == embedded


def test_defaults_fill_what_a_minimal_file_leaves_out() -> None:
    policy = parse_policy(VALID, "t.yaml")
    assert policy.mode_label == "example.com/mode"
    assert policy.dns.namespace == "kube-system"
    assert policy.dns.ports == [53]
    ports = policy.profiles["db"].allow[0].ports
    assert [(p.port, p.protocol, p.end_port) for p in ports] == [
        (5432, "TCP", None),
        (53, "UDP", None),
        (8000, "TCP", 8100),
    ]


def test_an_empty_file_is_a_valid_policy_with_no_profiles() -> None:
    assert parse_policy("", "empty.yaml").profiles == {}


BAD = [
    pytest.param(
        "profiles:\n  web:\n    allow:\n      - cidr: 34.210.129.0/33\n",
        ["bad.yaml", "line 4", "profiles.web.allow[0].cidr", "34.210.129.0/33"],
        id="bad-cidr",
    ),
    pytest.param(
        "profiles:\n  web:\n    allow:\n      - cidr: 10.0.0.1/8\n",
        ["profiles.web.allow[0].cidr", "host bits"],
        id="cidr-with-host-bits",
    ),
    pytest.param(
        "profiles:\n  web:\n    allow:\n      - {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}\n",
        ["profiles.web.allow[0]", "does not lie inside"],
        id="except-outside-cidr",
    ),
    pytest.param(
        "profiles:\n  web:\n    allow:\n      - {cidr: 10.0.0.0/8, host: a.example}\n",
        ["profiles.web.allow[0]", "exactly one of"],
        id="two-kinds-of-destination",
    ),
    pytest.param(
        "profiles:\n  web:\n    allow:\n      - ports: [443]\n",
        ["profiles.web.allow[0]", "exactly one of"],
        id="no-destination",
    ),
    pytest.param(
        "profiles:\n  web:\n    allow:\n      - {cidr: 10.0.0.0/8, ports: [70000]}\n",
        ["profiles.web.allow[0].ports[0]", "70000"],
        id="port-out-of-range",
    ),
    pytest.param(
        "profiles:\n  web:\n    allow:\n      - {host: 'not a host'}\n",
        ["profiles.web.allow[0].host", "not a host"],
        id="bad-host",
    ),
    pytest.param(
        "profiles:\n  web:\n    alow: []\n",
        ["line 3", "profiles.web.alow", "unknown field"],
        id="typo-in-field",
    ),
    pytest.param(
        "profiles:\n  'bad name!': {}\n",
        ["profiles", "bad name!", "label value"],
        id="profile-name-not-a-label-value",
    ),
    pytest.param(
        "profiles:\n  web: {proxy: true}\n",
        ["web", "proxy: true", "no proxy section"],
        id="proxy-profile-without-proxy",
    ),
    pytest.param(
        "proxy: {url: 'ftp://p:21', namespace: p, podSelector: {}, port: 21}\n",
        ["proxy.url", "ftp://p:21"],
        id="proxy-url-scheme",
    ),
    pytest.param("labelPrefix: Not_A_Domain\n", ["labelPrefix", "DNS subdomain"], id="bad-prefix"),
    pytest.param(
        "namespaces:\n  payments: {mode: enforcing}\n",
        ["line 2", "namespaces.payments.mode", "enforce"],
        id="bad-mode",
    ),
    pytest.param(
        "exemptNamespaces: [Kube_System]\n",
        ["exemptNamespaces[0]", "namespace"],
        id="bad-namespace",
    ),
    pytest.param(
        "dns: {podSelector: {'k8s app': dns}}\n", ["dns.podSelector", "k8s app"], id="bad-selector"
    ),
    pytest.param(
        "profiles:\n  web: {}\n  web: {}\n", ["line 3", "given twice", "line 2"], id="duplicate-key"
    ),
    pytest.param("profiles: [a, b\n", ["not valid YAML", "line"], id="yaml-syntax"),
    pytest.param("- a\n- b\n", ["must be a mapping", "list"], id="not-a-mapping"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_a_bad_file_names_the_file_the_place_and_the_problem(
    text: str, expected: list[str]
) -> None:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "bad.yaml")
    message = str(caught.value)
    assert "bad.yaml" in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "Traceback" not in message
    assert "https://errors.pydantic.dev" not in message


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot be read"):
        load_policy(tmp_path / "absent.yaml")


def test_a_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PolicyFileError, match="not UTF-8"):
        load_policy(path)


class TestPolicyStore:
    def write(self, path: Path, text: str, mtime_ns: int) -> None:
        path.write_text(text)
        os.utime(path, ns=(mtime_ns, mtime_ns))

    def test_reloads_when_the_file_changes_after_the_interval(self, tmp_path: Path) -> None:
        path = tmp_path / "policy.yaml"
        self.write(path, VALID, 1_000_000_000)
        now = [0.0]
        reloaded: list[object] = []
        store = PolicyStore(
            path, check_interval=2.0, clock=lambda: now[0], on_reload=reloaded.append
        )
        first = store.current()
        self.write(path, VALID.replace("db:", "cache:"), 2_000_000_000)
        assert store.current() is first  # within the interval: no stat, same policy
        now[0] = 2.5
        assert set(store.current().profiles) == {"none", "cache"}
        assert len(reloaded) == 1

    def test_a_bad_new_version_keeps_the_last_good_policy(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "policy.yaml"
        self.write(path, VALID, 1_000_000_000)
        now = [0.0]
        store = PolicyStore(path, check_interval=1.0, clock=lambda: now[0])
        good = store.current()
        self.write(path, "profiles: [oops\n", 2_000_000_000)
        now[0] = 5.0
        assert store.current() is good
        assert store.last_error is not None and "not valid YAML" in store.last_error
        assert "previous policy stays in force" in caplog.text
        self.write(path, VALID.replace("db:", "fixed:"), 3_000_000_000)
        now[0] = 10.0
        assert "fixed" in store.current().profiles
        assert store.last_error is None

    def test_a_worker_starting_on_a_broken_file_serves_the_last_good_copy(
        self, tmp_path: Path
    ) -> None:
        path, snapshot = tmp_path / "policy.yaml", tmp_path / "last-good.yaml"
        path.write_text(VALID)
        first = PolicyStore(path, snapshot=snapshot)  # a worker that started on the good file
        assert snapshot.read_text() == VALID
        path.write_text("profiles: [broken\n")
        replacement = PolicyStore(path, snapshot=snapshot)  # a worker started after the push
        assert set(replacement.current().profiles) == set(first.current().profiles)
        assert replacement.last_error is not None and "not valid YAML" in replacement.last_error

    def test_without_a_good_copy_a_broken_file_is_still_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "policy.yaml"
        path.write_text("profiles: 3\n")
        with pytest.raises(PolicyFileError):
            PolicyStore(path, snapshot=tmp_path / "absent.yaml")

    def test_a_bad_file_at_start_is_an_error_not_a_fallback(self, tmp_path: Path) -> None:
        path = tmp_path / "policy.yaml"
        path.write_text("profiles: 3\n")
        with pytest.raises(PolicyFileError, match="profiles"):
            PolicyStore(path)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("profiles:\n  ? [a, b]\n  : {}\n", id="list-as-key"),
        pytest.param("profiles:\n  ? {a: 1}\n  : {}\n", id="mapping-as-key"),
        pytest.param("a: &x [*x]\n", id="recursive-anchor"),
        pytest.param("profiles: " + "[" * 2000 + "]" * 2000 + "\n", id="deep-nesting"),
    ],
)
def test_odd_yaml_is_a_policy_error_never_another_exception(text: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "odd.yaml")
    assert "odd.yaml" in str(caught.value)


def test_a_copy_of_a_policy_derives_its_values_afresh() -> None:
    policy = load_policy(None)
    assert policy.proxy is not None
    _ = policy.profile_label, policy.proxy.env
    policy.memo["rendered"] = "for the original"
    copy = policy.model_copy(
        update={
            "label_prefix": "example.com",
            "proxy": policy.proxy.model_copy(update={"no_proxy": [".local"]}),
        }
    )
    assert copy.profile_label == "example.com/profile"
    assert copy.proxy is not None and dict(copy.proxy.env)["NO_PROXY"] == ".local"
    assert copy.memo == {}
