"""Proxy injection: HTTP_PROXY, HTTPS_PROXY and NO_PROXY (and their lower-case twins) in containers.

The patch adds only what is missing, at the paths it changes, so a second pass over its own output
finds nothing to do. A value the workload sets itself is never replaced: an application that
already names a proxy knows something egress-guard does not, and the owner is told by a warning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.findings import PROXY_ENV, Finding, Severity, Subject, detail
from webhook.core.json_patch import PatchOp, add, pointer
from webhook.core.policy import ProxySettings
from webhook.core.raw_object import mapping_at, text_at
from webhook.core.workloads import containers

MAX_CONTAINERS = 128
"""Containers a pod may have for the variables to be injected. Each injected container adds at
most six `env` entries to the patch (about a kilobyte with a typical proxy URL), so an answer
stays under ~170 KB whatever the request: without a bound, a 2 MB review of tens of thousands of
one-line containers would be answered with a patch of tens of megabytes, and a few at once
would exhaust the server's memory. Beyond it the pod is admitted without the variables, with a
warning (mutation is a convenience; validation and the NetworkPolicies still hold)."""


@dataclass(frozen=True, slots=True)
class ProxyInjection:
    """The patch, what was left alone and why, and which variables went into which container."""

    patch: tuple[PatchOp, ...]
    findings: tuple[Finding, ...]
    injected: Mapping[str, tuple[str, ...]]


def _escape_expansion(value: str) -> str:
    """Kubernetes expands `$(NAME)` in env values; a literal `$(` must be written `$$(`."""
    return value.replace("$(", "$$(")


def _pairs(proxy: ProxySettings) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Each upper-case variable with its lower-case twin: they are set or left alone together."""
    upper = proxy.env[:3]
    return tuple(
        ((name, _escape_expansion(value)), (name.lower(), _escape_expansion(value)))
        for name, value in upper
    )


def _missing_entries(
    env: list[Any], proxy: ProxySettings, container_name: str
) -> tuple[list[dict[str, str]], list[Finding]]:
    existing = {
        entry["name"]: entry
        for entry in env
        if type(entry) is dict and isinstance(entry.get("name"), str)
    }
    missing: list[dict[str, str]] = []
    findings: list[Finding] = []
    for pair in _pairs(proxy):
        present = [name for name, _ in pair if name in existing]
        ours = all(
            existing[name].get("value") == value and "valueFrom" not in existing[name]
            for name, value in pair
            if name in existing
        )
        if present and not ours:
            findings.append(
                Finding(
                    PROXY_ENV,
                    Severity.ADVICE,
                    Subject("container", container_name),
                    f"sets its own {'/'.join(present)}: left unchanged",
                    detail=detail(problem="own-value", variables=tuple(present)),
                )
            )
            continue
        missing.extend(
            {"name": name, "value": value} for name, value in pair if name not in existing
        )
    return missing, findings


def inject_proxy_env(
    pod: Mapping[str, Any],
    proxy: ProxySettings,
    lists: tuple[str, ...],
    skip: frozenset[str] = frozenset(),
) -> ProxyInjection:
    """Patch operations that give every container in `lists` (but those named in `skip`) the
    proxy variables it lacks."""
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        return ProxyInjection(patch=(), findings=(), injected={})
    count = sum(len(items) for name in lists if isinstance(items := spec.get(name), list))
    if count > MAX_CONTAINERS:
        return ProxyInjection(patch=(), findings=(_too_many(count),), injected={})
    patch: list[PatchOp] = []
    findings: list[Finding] = []
    injected: dict[str, tuple[str, ...]] = {}
    for list_name, index, container in containers(spec, lists):
        name = container.get("name")
        name = name if isinstance(name, str) else f"{list_name}[{index}]"
        if name in skip:
            continue
        env = container.get("env")
        if env is not None and not isinstance(env, list):
            findings.append(
                Finding(
                    PROXY_ENV,
                    Severity.ADVICE,
                    Subject("container", name),
                    "has a malformed env (not a list): not injected",
                    detail=detail(problem="malformed-env"),
                )
            )
            continue
        missing, conflicts = _missing_entries(env or [], proxy, name)
        findings.extend(conflicts)
        if not missing:
            continue
        env_path = pointer("spec", list_name, index, "env")
        if env is None:
            patch.append(add(env_path, missing))
        else:
            patch.extend(add(env_path + "/-", entry) for entry in missing)
        injected[name] = tuple(entry["name"] for entry in missing)
        sources = _env_from_sources(container.get("envFrom"), injected[name])
        if sources:
            findings.append(_overrides_env_from(name, sources))
    return ProxyInjection(patch=tuple(patch), findings=tuple(findings), injected=injected)


def _too_many(count: int) -> Finding:
    return Finding(
        PROXY_ENV,
        Severity.ADVICE,
        None,
        f"proxy variables not injected: the pod has {count} containers, more than {MAX_CONTAINERS}",
        "set them in the containers' env",
        detail(problem="too-many-containers", containers=count, limit=MAX_CONTAINERS),
    )


def _env_from_sources(env_from: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """The envFrom sources (`configMap/x`, `secret/y`) that could set one of `names`: any
    whose prefix (empty by default) begins one of them. What they hold is not in the request."""
    if not isinstance(env_from, list):
        return ()
    found: list[str] = []
    for source in env_from:
        if type(source) is not dict:
            continue
        prefix = source.get("prefix")
        prefix = prefix if isinstance(prefix, str) else ""
        if not any(name.startswith(prefix) for name in names):
            continue
        for key, kind in (("configMapRef", "configMap"), ("secretRef", "secret")):
            ref = source.get(key)
            if type(ref) is dict:
                found.append(f"{kind}/{ref.get('name') or '?'}")
    return tuple(found)


def _overrides_env_from(container: str, sources: tuple[str, ...]) -> Finding:
    """In Kubernetes an `env` entry wins over the same name from `envFrom`: a proxy variable
    the workload sets through a ConfigMap or Secret would be silently replaced."""
    return Finding(
        PROXY_ENV,
        Severity.ADVICE,
        Subject("container", container),
        f"reads envFrom {', '.join(sources)}: injected proxy variables override its own",
        "set them in env instead, where egress-guard leaves them alone",
        detail(problem="env-from", sources=sources),
        "set them in env",
    )


def record_annotation(
    pod: Mapping[str, Any], key: str, proxy: ProxySettings, injected: Mapping[str, tuple[str, ...]]
) -> PatchOp:
    """An annotation on the pod that records what was injected, for people and for audits.

    When the API server calls the webhook again (another webhook added a container meanwhile),
    the record of the first pass is kept and the new containers are added to it.
    """
    metadata = mapping_at(pod, "metadata")
    containers = {name: list(names) for name, names in injected.items()}
    earlier = _recorded_containers(text_at(pod, "metadata", "annotations", key))
    value = json.dumps(
        {"url": proxy.url, "containers": {**earlier, **containers}},
        separators=(",", ":"),
        sort_keys=True,
    )
    if metadata is None:
        return add("/metadata", {"annotations": {key: value}})
    if mapping_at(metadata, "annotations") is None:
        return add("/metadata/annotations", {key: value})
    return add(pointer("metadata", "annotations", key), value)


def _recorded_containers(text: str) -> dict[str, list[str]]:
    """The containers an earlier pass recorded in the annotation, if it reads as one."""
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    containers = mapping_at(record, "containers")
    if containers is None:
        return {}
    return {
        str(name): [str(v) for v in names]
        for name, names in containers.items()
        if isinstance(names, list)
    }
