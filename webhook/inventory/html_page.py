"""The inventory as one self-contained HTML page: a summary per namespace, a picture of which
profiles reach what, and every workload. No script, no font, no image fetched: it opens the same
from a CI artifact, an e-mail or an air-gapped laptop, and every text is escaped."""

from __future__ import annotations

from collections import Counter
from html import escape

from webhook.core.policy import Policy
from webhook.inventory.build import Inventory, reaches

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2733}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #dde3ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f6f9}td.n{text-align:right}
.refused{color:#b42318}.ok{color:#067647}.muted{color:#667085}
svg text{font:12px system-ui,sans-serif}
"""

ROW_HEIGHT = 28


def _profiles_picture(inventory: Inventory, policy: Policy) -> str:
    """Profiles in use (left, with their workload counts) joined to what they reach (right)."""
    counts = Counter(e.profile for e in inventory.entries if e.profile in policy.profiles)
    profiles = sorted(counts)
    if not profiles:
        return '<p class="muted">No workload declares a defined profile.</p>'
    destinations: list[str] = []
    edges: list[tuple[int, int]] = []
    for left, name in enumerate(profiles):
        for target in reaches(policy.profiles[name], policy):
            if target not in destinations:
                destinations.append(target)
            edges.append((left, destinations.index(target)))
    height = ROW_HEIGHT * max(len(profiles), len(destinations)) + 10
    parts = [
        f'<svg role="img" aria-label="which profiles reach what" width="900" height="{height}" '
        f'viewBox="0 0 900 {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for left, right in edges:
        y1, y2 = 20 + left * ROW_HEIGHT, 20 + right * ROW_HEIGHT
        parts.append(
            f'<path d="M 230 {y1} C 330 {y1}, 330 {y2}, 430 {y2}" stroke="#7a9cc6" '
            'stroke-width="1.5" fill="none"/>'
        )
    for left, name in enumerate(profiles):
        y = 20 + left * ROW_HEIGHT
        parts.append(f'<circle cx="230" cy="{y}" r="4" fill="#2e5a88"/>')
        plural = "workload" if counts[name] == 1 else "workloads"
        label = escape(f"{name} ({counts[name]} {plural})")
        parts.append(f'<text x="220" y="{y + 4}" text-anchor="end">{label}</text>')
    for right, target in enumerate(destinations):
        y = 20 + right * ROW_HEIGHT
        parts.append(f'<circle cx="430" cy="{y}" r="4" fill="#2e5a88"/>')
        parts.append(f'<text x="440" y="{y + 4}">{escape(target)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def page(
    inventory: Inventory, policy: Policy, title: str = "egress-guard: egress inventory"
) -> str:
    summary = []
    grouped = inventory.by_namespace()
    for name, (mode, inject) in sorted(inventory.namespaces.items()):
        entries = grouped[name]
        refused = sum(bool(e.if_enforced) for e in entries)
        declared = sum(bool(e.profile) for e in entries)
        css = "refused" if refused else "ok"
        summary.append(
            f"<tr><td>{escape(name)}</td><td>{escape(mode)}</td><td>{escape(inject)}</td>"
            f'<td class="n">{len(entries)}</td><td class="n">{declared}</td>'
            f'<td class="n {css}">{refused}</td></tr>'
        )
    rows = []
    for e in inventory.entries:
        css = ' class="refused"' if e.if_enforced else ""
        rows.append(
            f"<tr><td>{escape(e.namespace)}</td><td>{escape(e.kind)}/{escape(e.name)}</td>"
            f"<td>{escape(e.mode)}</td><td>{escape(e.profile or '(none)')}</td>"
            f"<td>{escape('; '.join(e.reaches) or '-')}</td><td>{escape(e.policies)}</td>"
            f"<td{css}>{escape(e.if_enforced or 'allowed')}</td></tr>"
        )
    refused_total = sum(bool(e.if_enforced) for e in inventory.entries)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f"<p>{len(inventory.entries)} workloads in {len(inventory.namespaces)} namespaces; "
        f'<span class="{"refused" if refused_total else "ok"}">{refused_total} would be '
        "refused if their namespace enforced</span>.</p>"
        "<h2>Namespaces</h2><table><thead><tr><th>namespace</th><th>mode</th><th>inject</th>"
        "<th>workloads</th><th>with a profile</th><th>refused if enforced</th></tr></thead>"
        f"<tbody>{''.join(summary)}</tbody></table>"
        f"<h2>Which profiles reach what</h2>{_profiles_picture(inventory, policy)}"
        "<h2>Workloads</h2><table><thead><tr><th>namespace</th><th>workload</th><th>mode</th>"
        "<th>profile</th><th>reaches</th><th>NetworkPolicies</th><th>if enforced</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
        "</body></html>\n"
    )
