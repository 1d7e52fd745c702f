"""scripts/docstring_share.py counts docstring lines as written: module, class, method and nested function
docstrings, and no other string."""

from __future__ import annotations

import subprocess
import sys

from script_modules import load_script

share = load_script("docstring_share")
REPO_ROOT = share.REPO_ROOT

SOURCE = '''"""Module docstring,
two lines."""
import os

NOT_A_DOCSTRING = """three
lines
here"""


class A:
    """One line."""

    def method(self):
        """Method docstring
        over
        three lines."""
        x = "not a docstring"
        return x


def outer():
    f"""an f-string is not a docstring"""

    def inner():
        """Nested."""

    return inner


async def coroutine():
    """Async,
    two."""
'''


def test_counts_every_docstring_and_nothing_else():
    assert share.docstring_lines(SOURCE) == 2 + 1 + 3 + 1 + 2


def test_library_files_leave_out_the_tests():
    files = share.library_files(REPO_ROOT)
    assert REPO_ROOT / "sampler.py" in files
    assert not any("tests" in p.relative_to(REPO_ROOT).parts for p in files)


def test_totals_match_a_file_by_file_sum(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(SOURCE)
    (tmp_path / "top.py").write_text('"""Doc."""\nx = 1\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(SOURCE)
    assert share.shares(tmp_path) == {"(root)": (1, 2), "pkg": (9, len(SOURCE.splitlines()))}


def test_command_prints_the_table_and_fails_over_the_limit():
    ok = subprocess.run([sys.executable, "scripts/docstring_share.py"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "| all |" in ok.stdout
    over = subprocess.run(
        [sys.executable, "scripts/docstring_share.py", "--max", "0.001"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert over.returncode == 1 and "is over 0.001" in over.stderr


def test_library_docstrings_are_at_most_14_percent_of_its_lines():
    table = share.shares(REPO_ROOT)
    doc = sum(d for d, _ in table.values())
    lines = sum(n for _, n in table.values())
    worst = sorted(table.items(), key=lambda item: item[1][0] / item[1][1], reverse=True)[:3]
    listing = ", ".join(f"{name} {100 * d / n:.1f} %" for name, (d, n) in worst)
    assert doc <= 0.14 * lines, f"docstrings are {100 * doc / lines:.1f} % of the library's lines; worst: {listing}"
