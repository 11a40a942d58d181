"""The mutation score of a part of egress-guard, and its survivors checked against the ones
`docs/mutation-testing.md` explains.

    python -m tools.mutation_report --scope webhook.core            # after `mutmut run`
    python -m tools.mutation_report --scope webhook.core --skeleton # entries for new survivors

mutmut keeps each mutant's result in `mutants/<file>.meta` and every mutated function beside the
original in `mutants/<file>.py`. This reads both directly (mutmut's own `show` parses the whole
file once per mutant: minutes for a hundred survivors), prints the score, and compares the
survivors with the documented ones by function and change, never by mutant number, which moves
whenever the code does. It exits 1 when the score is under `--min-score` or a survivor is not
documented (`--strict`), so `make mutation` of the core fails until every survivor is killed or
explained.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

MUTANTS = Path("mutants")
DOC = Path("docs/mutation-testing.md")

STATUS = {
    0: "survived",
    1: "killed",
    3: "killed",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
}
"""mutmut's exit codes per mutant (a test run's result, or its own markers), read as mutmut
reads them: a run stopped by its CPU limit (SIGXCPU, however the shell reports it) timed out."""
CAUGHT = frozenset({"killed", "timeout"})
_NAME_SUFFIX = re.compile(r"__mutmut_(?:orig|\d+)")
_DEF_NAME = re.compile(r"def x[_ǁ](?:\w+ǁ)?(\w+)")
"""mutmut's name for a mutated function (`x_pick`, `xǁPolicyǁmethod`), read as the original's."""
_KEY = re.compile(r"^(?P<module>.+?)\.(?P<symbol>x[_ǁ].*)__mutmut_(?P<number>\d+)$")


@dataclass(frozen=True, slots=True)
class Survivor:
    function: str
    """`module.function` or `module.Class.method`, as a person reads it."""
    change: str
    """The mutated lines, `- old` then `+ new`, whitespace folded."""
    key: str


def _readable(module: str, symbol: str) -> str:
    name = symbol.removeprefix("x_").removeprefix("xǁ").replace("ǁ", ".")
    return f"{module}.{name}"


def _functions(path: Path) -> dict[str, str]:
    """Source of every function in a mutated file, by name: its lines, cut from the file's lines
    split once (`ast.get_source_segment` splits the whole file again for each of the thousands
    of functions in a mutated file, minutes for the core)."""
    text = path.read_text()
    lines = text.split("\n")
    return {
        node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _change(original: str, mutant: str) -> str:
    original, mutant = (
        _DEF_NAME.sub(r"def \1", _NAME_SUFFIX.sub("", text)) for text in (original, mutant)
    )
    lines = [
        f"{line[0]} {' '.join(line[1:].split())}"
        for line in difflib.unified_diff(
            original.splitlines(), mutant.splitlines(), lineterm="", n=0
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return " / ".join(lines) or "(no textual change)"


def in_scope(module: str, scopes: tuple[str, ...]) -> bool:
    return any((module + ".").startswith(scope + ".") for scope in scopes)


def results(*scopes: str) -> tuple[Counter[str], list[Survivor]]:
    counts: Counter[str] = Counter()
    survivors: list[Survivor] = []
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        source: dict[str, str] | None = None
        for key, code in sorted(codes.items(), key=lambda item: _order(item[0])):
            match = _KEY.match(key)
            if match is None or not in_scope(match["module"], scopes):
                continue
            status = "not checked" if code is None else STATUS.get(code, f"exit {code}")
            counts[status] += 1
            if status != "survived":
                continue
            if source is None:
                source = _functions(meta.with_suffix(""))
            symbol = match["symbol"]
            survivors.append(
                Survivor(
                    _readable(match["module"], symbol),
                    _change(
                        source.get(f"{symbol}__mutmut_orig", ""),
                        source.get(f"{symbol}__mutmut_{match['number']}", ""),
                    ),
                    key,
                )
            )
    return counts, survivors


def _order(key: str) -> tuple[str, int]:
    match = _KEY.match(key)
    return (key, 0) if match is None else (match["module"] + match["symbol"], int(match["number"]))


def documented(doc: Path) -> set[tuple[str, str]]:
    """(function, change) of every survivor the document explains: under a `### function`
    heading, one `` - `change`: why `` line each."""
    found: set[tuple[str, str]] = set()
    function = ""
    for line in doc.read_text().splitlines() if doc.exists() else ():
        if line.startswith("### "):
            function = line[4:].strip().strip("`")
        elif line.startswith("- `") and function:
            change = line[3:].split("`:", 1)[0]
            found.add((function, change))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scope",
        nargs="+",
        default=["webhook.core"],
        help="module prefixes to report on, together",
    )
    parser.add_argument("--min-score", type=float, default=0.0, help="percent; below fails")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument(
        "--skeleton", action="store_true", help="print doc entries for undocumented survivors"
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail on any survivor the document does not explain"
    )
    args = parser.parse_args(argv)
    if not MUTANTS.is_dir():
        print("no mutants/ here: run `mutmut run` (or `make mutation`) first", file=sys.stderr)
        return 2
    scopes = tuple(args.scope)
    name = " + ".join(scopes)
    counts, survivors = results(*scopes)
    checked = sum(n for status, n in counts.items() if status not in ("not checked", "skipped"))
    if not checked:
        print(f"no mutant of {name} has a result", file=sys.stderr)
        return 2
    caught = sum(counts[status] for status in CAUGHT)
    score = 100.0 * caught / checked
    print(
        f"{name}: {score:.1f}% of {checked} mutants caught "
        f"({', '.join(f'{n} {status}' for status, n in sorted(counts.items()))})"
    )
    explained = documented(args.doc)
    unexplained = [s for s in survivors if (s.function, s.change) not in explained]
    scoped = {pair for pair in explained if in_scope(pair[0], scopes)}
    gone = sorted(scoped - {(s.function, s.change) for s in survivors})
    if args.skeleton:
        current = ""
        for survivor in unexplained:
            if survivor.function != current:
                current = survivor.function
                print(f"\n### {current}\n")
            print(f"- `{survivor.change}`: ")
    else:
        for survivor in unexplained:
            print(f"undocumented survivor {survivor.key}: {survivor.function}: {survivor.change}")
    for function, change in gone:
        print(f"documented but caught now (remove it from {args.doc}): {function}: {change}")
    failed = score < args.min_score or (args.strict and bool(unexplained))
    if score < args.min_score:
        print(f"score {score:.1f}% is under {args.min_score:g}%", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
