"""The inventory as a kubectl-style table and as Markdown (for a wiki page or a pull request)."""

from __future__ import annotations

from webhook.core.policy import Policy
from webhook.inventory.build import Entry, Inventory, reaches

HEADERS = ("NAMESPACE", "WORKLOAD", "MODE", "INJECT", "PROFILE", "POLICIES", "IF ENFORCED")


def _row(entry: Entry) -> tuple[str, ...]:
    return (
        entry.namespace,
        f"{entry.kind}/{entry.name}",
        entry.mode,
        entry.inject,
        entry.profile or "<none>",
        entry.policies,
        entry.if_enforced or "allowed",
    )


def table(inventory: Inventory, policy: Policy) -> str:
    """One row per workload; then what each profile in use reaches (the rows would be too wide
    with it)."""
    rows = [HEADERS, *(_row(entry) for entry in inventory.entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS) - 1)]
    lines = [
        "   ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:-1])) + "   " + row[-1]
        for row in rows
    ]
    used = sorted(
        {entry.profile for entry in inventory.entries if entry.profile in policy.profiles}
    )
    if used:
        lines += ["", "PROFILE REACHES"]
        for name in used:
            lines.append(f"{name}: {'; '.join(reaches(policy.profiles[name], policy))}")
    refused = sum(bool(entry.if_enforced) for entry in inventory.entries)
    lines += [
        "",
        f"{len(inventory.entries)} workloads in {len(inventory.namespaces)} namespaces; "
        f"{refused} would be refused if their namespace enforced",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(inventory: Inventory, policy: Policy) -> str:
    lines = ["# Egress inventory", ""]
    lines += ["| namespace | mode | inject | workloads | would be refused if enforced |"]
    lines += ["|---|---|---|---:|---:|"]
    grouped = inventory.by_namespace()
    for name, (mode, inject) in sorted(inventory.namespaces.items()):
        entries = grouped[name]
        refused = sum(bool(e.if_enforced) for e in entries)
        lines.append(f"| {_cell(name)} | {mode} | {inject} | {len(entries)} | {refused} |")
    lines += ["", "## Profiles", ""]
    for name, profile in sorted(policy.profiles.items()):
        lines.append(f"- **{name}**: {_cell('; '.join(reaches(profile, policy)))}")
    lines += ["", "## Workloads", ""]
    lines += ["| " + " | ".join(h.lower() for h in HEADERS) + " |"]
    lines += ["|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_cell(c) for c in _row(e)) + " |" for e in inventory.entries]
    return "\n".join(lines) + "\n"
