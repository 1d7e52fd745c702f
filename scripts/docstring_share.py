"""Share of docstring lines in the library's Python lines (tests excluded), per top-level package.

    python scripts/docstring_share.py [--max 0.14]

A docstring line is a line of the first-statement string of a module, class or function. Exit status 1 when
``--max`` is given and the total share exceeds it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {"tests", ".venv", ".git", "shared"}


def docstring_lines(source: str) -> int:
    """Lines spanned by the docstrings of ``source``'s module, classes and functions."""
    count = 0
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                count += first.end_lineno - first.lineno + 1
    return count


def library_files(root: Path) -> list[Path]:
    """The repository's .py files outside tests and environments."""
    return sorted(p for p in root.rglob("*.py") if not SKIPPED & set(p.relative_to(root).parts))


def shares(root: Path) -> dict[str, tuple[int, int]]:
    """(docstring lines, all lines) per top-level package ("(root)" for the top-level modules)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path in library_files(root):
        source = path.read_text()
        parts = path.relative_to(root).parts
        entry = totals[parts[0] if len(parts) > 1 else "(root)"]
        entry[0] += docstring_lines(source)
        entry[1] += len(source.splitlines())
    return {name: (doc, lines) for name, (doc, lines) in sorted(totals.items())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=float, default=None, help="largest allowed total share, e.g. 0.14")
    args = parser.parse_args(argv)
    table = shares(REPO_ROOT)
    doc = sum(d for d, _ in table.values())
    lines = sum(n for _, n in table.values())
    print("| package | docstring lines | lines | share |\n|---|---:|---:|---:|")
    for name, (d, n) in table.items():
        print(f"| {name} | {d} | {n} | {100 * d / n:.1f} % |")
    print(f"| all | {doc} | {lines} | {100 * doc / lines:.1f} % |")
    if args.max is not None and doc > args.max * lines:
        print(f"docstring share {doc / lines:.3f} is over {args.max}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
