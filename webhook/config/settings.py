"""Server settings: command-line flags over EGRESS_GUARD_* environment variables over defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ClusterMode = Literal["auto", "none", "in-cluster", "kubeconfig"]
"""Where namespace labels come from and NetworkPolicies go (`--cluster`)."""
CLUSTER_MODES: tuple[ClusterMode, ...] = get_args(ClusterMode)
ClusterKind = Literal["in-cluster", "kubeconfig"]
"""A cluster egress-guard can reach: what `auto` resolves to when there is one."""
CLUSTER_KINDS: tuple[ClusterKind, ...] = get_args(ClusterKind)


def resolve_cluster_mode(
    mode: ClusterMode, *, kubeconfig: str | Path | None = None, context: str | None = None
) -> ClusterKind | Literal["none"]:
    """`auto`: the pod's service account inside a pod, unless a kubeconfig or context is named;
    a kubeconfig when one is named or exists; otherwise no cluster. Any other mode is as given,
    except that naming a kubeconfig or context means the kubeconfig."""
    if mode == "none":
        return mode
    if kubeconfig or context:
        return "kubeconfig"
    if mode != "auto":
        return mode
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "in-cluster"
    default = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if any(Path(p).is_file() for p in default.split(os.pathsep) if p):
        return "kubeconfig"
    return "none"


RECONCILER_HEALTH_PORT = 8081
"""The reconciler's plain HTTP /healthz, /readyz and /metrics (`reconcile --health-port`)."""

RECONCILE_WRITES_PER_SECOND = 200.0
RECONCILE_WRITES_IN_FLIGHT = 4
"""A pass's writes: a few at once, at most 200/s (a first pass over 2,000 namespaces in under a
minute). API Priority and Fairness is what protects the API server: its 429s pause every writer
for their Retry-After; the rate only bounds the burst."""

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
"""Object and oldObject at etcd's 1.5 MiB limit each, JSON-escaped, fit well inside this."""


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EGRESS_GUARD_", frozen=True, extra="forbid")

    config: Path | None = Field(
        default=None, description="policy file; the embedded example if unset"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    cert_dir: Path = Path("certs")
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(
        default=2,
        ge=1,
        le=256,
        description="two: one review may wait on the API server while the other is answered; "
        "more only add GIL contention on a core (p99 doubles at four)",
    )
    keepalive_s: int = Field(
        default=120, ge=1, description="above the API server's 90 s idle timeout"
    )
    graceful_timeout_s: int = Field(default=25, ge=1)
    worker_tmp_dir: Path | None = Field(
        default=None,
        description="gunicorn's heartbeat files; /dev/shm when it exists (a disk write stalls)",
    )
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    client_ca_file: Path | None = Field(
        default=None,
        description="CA whose client certificates may send reviews (the API server's); "
        "/healthz, /readyz and /metrics stay open to probes",
    )
    cluster: ClusterMode = "auto"
    kubeconfig: Path | None = Field(
        default=None, description="kubeconfig to reach the cluster (else $KUBECONFIG, ~/.kube)"
    )
    context: str | None = Field(default=None, description="kubeconfig context to use")
    service: str = "egress-guard"
    namespace: str = "egress-guard"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    healthcheck_file: Path | None = Field(
        default=None,
        description="where serve writes the URL of its /healthz for the image's HEALTHCHECK",
    )
    policy_snapshot: Path | None = Field(
        default=None,
        description="where workers keep the last good policy text (set by serve for its workers)",
    )
