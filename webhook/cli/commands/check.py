"""`egress-guard check`: the server's verdicts on manifests, offline (in CI, before applying)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import IO

import click

from webhook.admission.review import (
    ReviewError,
    render_response,
    response_document,
    review_from_document,
)
from webhook.cli.check_report import CheckReport, to_json, to_yaml
from webhook.cli.errors import EXIT_DENIED, EXIT_OK, fail
from webhook.cli.input_files import (
    STDIN,
    STDIN_NAME,
    InputFile,
    InputObject,
    InputProblem,
    Inputs,
    find_files,
    parse_text,
    read_file,
    read_inputs,
)
from webhook.cli.offline_review import (
    NamespaceAssumptions,
    OfflineReviewer,
    is_namespace,
    is_network_policy_object,
    namespace_objects,
)
from webhook.cli.output_junit import render_junit
from webhook.cli.output_table import render_table
from webhook.cli.policy_option import config_option, load_policy_or_exit
from webhook.cli.progress import progress
from webhook.core.backends import object_ref
from webhook.core.evaluate import Action
from webhook.core.kube_names import is_dns1123_label
from webhook.core.policy import Inject, Mode, Policy

OUTPUTS = ("table", "json", "yaml", "junit")


def namespace_flag(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not is_dns1123_label(value):
        raise click.BadParameter(f"{value!r} is not a valid namespace name (a DNS-1123 label)")
    return value


def namespaces_flag(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """A repeatable -n: each a namespace name."""
    for value in values:
        namespace_flag(ctx, param, value)
    return values


namespace_option = click.option(
    "-n",
    "--namespace",
    callback=namespace_flag,
    help="Namespace for objects that do not name one [default: default].",
)
mode_option = click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    help="Assume this mode label on namespaces not defined in the input [default: the policy "
    "file's namespaces entry, else none: not managed].",
)
inject_option = click.option(
    "--inject",
    type=click.Choice([i.value for i in Inject]),
    help="Assume this inject label on namespaces not defined in the input [default: the policy "
    "file's namespaces entry, else what the mode implies].",
)


def stdin_stream() -> IO[bytes]:
    return sys.stdin.buffer


def paths_or_stdin(paths: tuple[str, ...]) -> tuple[str, ...]:
    """The paths given, else standard input when something is piped into it (as `explain` and
    `check` both read it); a terminal on standard input is a usage error."""
    if paths:
        return paths
    if sys.stdin.isatty():
        raise click.UsageError(
            "give manifests with -f PATH (a file, a directory, or - for standard input), or pipe "
            "them on standard input"
        )
    return (STDIN,)


def read_all(paths: tuple[str, ...]) -> Inputs:
    """Every object in the paths given, with a progress bar on a terminal for many files."""
    files, problems = find_files(paths)
    inputs = Inputs(problems=problems)
    with progress(files, "reading manifests") as items:
        read_inputs(items, stdin_stream(), inputs)
    if not inputs.manifests and not inputs.problems:
        inputs.problems.append(
            InputProblem(
                ", ".join(STDIN_NAME if path == STDIN else path for path in paths),
                None,
                "no Kubernetes objects found in the input (give manifests with -f PATH, or pipe "
                "them on standard input)",
            )
        )
    return inputs


def review_inputs(
    inputs: Inputs,
    policy: Policy,
    namespace: str | None,
    mode: str | None,
    inject: str | None,
    *,
    require_managed: bool = False,
) -> CheckReport:
    """Review every workload and NetworkPolicy as a CREATE; count Namespaces; skip what runs no
    pods, and the workloads the API server would not send (their kind is outside the webhook
    rules)."""
    assumptions = NamespaceAssumptions(
        policy,
        namespace_objects(inputs.manifests),
        Mode(mode) if mode else None,
        Inject(inject) if inject else None,
    )
    reviewer = OfflineReviewer(assumptions)
    report = CheckReport(
        problems=inputs.problems, files=inputs.files, require_managed=require_managed
    )
    for manifest in inputs.manifests:
        if is_namespace(manifest):
            report.namespaces += 1
        elif is_network_policy_object(manifest):
            report.reviews.append(reviewer.review(manifest, namespace))
        elif reviewer.is_workload(manifest):
            not_sent = reviewer.not_sent(manifest, namespace)
            if not_sent is not None:
                report.not_sent.append(not_sent)
            else:
                report.reviews.append(reviewer.review(manifest, namespace))
        else:
            report.skipped[manifest.kind] += 1
    return report


def report_problems(problems: list[InputProblem]) -> None:
    for problem in problems:
        click.echo(f"error: {problem}", err=True)


def _generated_stream(report: CheckReport) -> str:
    """The generated objects (each once) and patched Pods, as one YAML stream."""
    documents: list[str] = []
    seen: set[tuple[str, str]] = set()
    for review in report.reviews:
        for manifest in review.network_policies:
            key = (str(manifest["metadata"]["namespace"]), object_ref(manifest))
            if key not in seen:
                seen.add(key)
                documents.append(f"# {manifest['kind']} for {review.kind}/{review.name}\n")
                documents[-1] += to_yaml(manifest)
        if review.patched is not None:
            documents.append(f"# {review.kind}/{review.name} after the mutating webhook\n")
            documents[-1] += to_yaml(review.patched)
    return "".join(f"---\n{document}" for document in documents)


def terminal() -> tuple[int | None, bool]:
    """Standard output's width when it is a terminal (None in a pipe), and whether to colour:
    on a terminal, unless NO_COLOR is set (https://no-color.org)."""
    if not sys.stdout.isatty():
        return None, False
    return shutil.get_terminal_size().columns, not os.environ.get("NO_COLOR")


def check_files(
    paths: tuple[str, ...],
    *,
    policy: Policy,
    namespace: str | None,
    mode: str | None,
    inject: str | None,
    output: str,
    show_generated: bool,
    require_managed: bool = False,
) -> int:
    report = review_inputs(
        read_all(paths), policy, namespace, mode, inject, require_managed=require_managed
    )
    report_problems(report.problems)
    if (advice := report.unmanaged_advice()) is not None:
        click.echo(advice, err=True)
    if output == "json":
        click.echo(to_json(report.document(show_generated=show_generated)))
    elif output == "yaml":
        click.echo(to_yaml(report.document(show_generated=show_generated)), nl=False)
    elif output == "junit":
        click.echo(render_junit(report), nl=False)
    else:
        width, colour = terminal()
        table = render_table(report, width, colour=colour)
        rows, _, summary = table.rstrip("\n").rpartition("\n")
        if rows:
            click.echo(rows)
        if show_generated and (generated := _generated_stream(report)):
            click.echo(generated, nl=False)
        click.echo(summary)
    return report.exit_code


def _read_review(path: str) -> InputObject:
    item = InputFile(None, STDIN_NAME) if path == STDIN else InputFile(Path(path), path)
    text, problem = read_file(item, stdin_stream())
    if problem is not None:
        fail(str(problem))
    assert text is not None
    entries = list(parse_text(text, item.name, json_first=text.lstrip()[:1] == "{"))
    problems = [entry for entry in entries if isinstance(entry, InputProblem)]
    manifests = [entry for entry in entries if isinstance(entry, InputObject)]
    if problems:
        fail(f"{problems[0]} (expected an AdmissionReview, as the API server sends it)")
    if len(manifests) != 1:
        fail(f"{item.name}: expected one AdmissionReview, found {len(manifests)} objects")
    return manifests[0]


def replay_review(
    path: str,
    *,
    policy: Policy,
    mode: str | None,
    inject: str | None,
    action: str,
    output: str,
) -> int:
    """The response the server would send to a recorded review, exactly."""
    manifest = _read_review(path)
    try:
        review = review_from_document(manifest.obj)
    except ReviewError as err:
        fail(f"{manifest.source.path}: {err}; the server would answer HTTP {err.status}")
    assumptions = NamespaceAssumptions(
        policy, None, Mode(mode) if mode else None, Inject(inject) if inject else None
    )
    reviewer = OfflineReviewer(assumptions)
    reviewer.labels_for(review.request.namespace)
    decision = reviewer.controller.review(review.request, Action(action)).decision
    if output == "json":
        click.echo(render_response(review.api_version, review.request.uid, decision).decode())
    elif output == "yaml":
        document = response_document(review.api_version, review.request.uid, decision)
        click.echo(to_yaml(document), nl=False)
    else:
        request = review.request
        click.echo(
            f"{action} {request.operation} {request.kind}/{request.object_name} "
            f"in namespace {request.namespace or '-'}: {decision.verdict.value}"
            + ("" if decision.allowed else f" ({decision.code}): {decision.message}")
        )
        for warning in decision.warnings:
            click.echo(f"warning: {warning}")
        if decision.patch:
            click.echo(f"patch: {len(decision.patch)} operations (see -o json)")
    return EXIT_OK if decision.allowed else EXIT_DENIED


@click.command()
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    metavar="PATH",
    help="A manifest file, a directory (read recursively: *.yaml, *.yml, *.json), or - for "
    "standard input. Repeatable [default: standard input].",
)
@click.option(
    "--review",
    "review_path",
    metavar="FILE",
    help="Replay a recorded AdmissionReview (JSON or YAML; - for standard input) and print the "
    "response the server would send [default: none, check -f's manifests].",
)
@click.option(
    "--action",
    type=click.Choice([a.value for a in Action]),
    help="With --review: the webhook the review was sent to [default: validate].",
)
@config_option
@namespace_option
@mode_option
@inject_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUTS),
    help="table (default), json or yaml (sorted keys: `items` and `summary`), or junit XML. "
    "With --review: json (default, the server's exact body), yaml or table [default: table].",
)
@click.option(
    "--show-generated",
    is_flag=True,
    help="Also print the NetworkPolicies that would be created and the patched Pods.",
)
@click.option(
    "--require-managed",
    is_flag=True,
    help="Make a workload in a namespace that is not managed (so not checked) an error, exit "
    "2: for CI, where a missing -n/--mode would otherwise check nothing.",
)
def check(
    *,
    paths: tuple[str, ...],
    review_path: str | None,
    action: str | None,
    config: Path | None,
    namespace: str | None,
    mode: str | None,
    inject: str | None,
    output: str | None,
    show_generated: bool,
    require_managed: bool,
) -> None:
    """Check manifests as the webhook would check them on creation, without a cluster.

    Each workload goes through the same admission controller as the server: Pods through the
    mutating webhook first, then every workload through the validating one. Objects that run no
    pods are skipped and counted, and so are workloads of a kind the webhook rules do not cover
    (a custom kind not in the policy's workloadKinds): the API server would never send them.

    \b
    Namespace labels, most specific first:
      1. a Namespace object in the input (its labels, as applying it would set them);
      2. --mode / --inject, over the policy file's `namespaces` entry for that namespace;
      3. the policy file's `namespaces` entry;
      4. none: the namespace is not managed: nothing in it is checked (the server admits it
         unchecked); counted apart, `skipped` in JUnit, an error with --require-managed.

    \b
    Exit codes:
      0  every workload allowed (warned and audited count as allowed)
      1  at least one workload denied, even if some input could not be read
      2  usage error, or input that could not be read (or, with --require-managed, a workload
         in an unmanaged namespace) and nothing denied

    \b
    Examples:
      egress-guard check -f k8s/ --namespace shop --mode enforce
      helm template chart/ | egress-guard check -f - -n shop --mode enforce \\
        --require-managed -o junit > egress-report.xml
      egress-guard check --review captured-review.json --action mutate
    """
    if review_path is not None:
        if paths or show_generated or namespace or require_managed:
            raise click.UsageError(
                "--review replays one review: it takes no -f, --namespace, --show-generated or "
                "--require-managed"
            )
        if output == "junit":
            raise click.UsageError("--review prints a response: use -o json, yaml or table")
        policy = load_policy_or_exit(config)
        sys.exit(
            replay_review(
                review_path,
                policy=policy,
                mode=mode,
                inject=inject,
                action=action or "validate",
                output=output or "json",
            )
        )
    if action is not None:
        raise click.UsageError("--action goes with --review")
    paths = paths_or_stdin(paths)
    policy = load_policy_or_exit(config, advise=True)
    sys.exit(
        check_files(
            paths,
            policy=policy,
            namespace=namespace,
            mode=mode,
            inject=inject,
            output=output or "table",
            show_generated=show_generated,
            require_managed=require_managed,
        )
    )


COMMAND = check
