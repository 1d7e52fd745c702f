"""The README's commands against the code: every script, module, config path and flag its code blocks name.

Method: the fenced code blocks of README.md are split into shell commands (backslash continuations joined,
comments dropped, ``&&`` / ``;`` / ``|`` separating commands). A command runs a Python script
(``python X.py``, ``torchrun ... X.py``, ``accelerate launch ... X.py``), a module (``python -m a.b``) or a
shell script (``bash X.sh``). For each, the file must exist; every flag after it (``-x``, ``--name``,
``--name=value``) must appear as a whole word in the script's ``--help`` output (for a shell script: in
its text), and every ``configs/...`` path anywhere in the command must exist. The ``--help`` texts are
collected in ONE subprocess that runs each script's ``__main__`` with ``--help`` (torch is imported once).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SEPARATORS = {"&&", "||", ";", "|"}
CONFIG_PATH = re.compile(r"(?:^|=)(configs/[\w./-]+\.ya?ml)$")

# Runs in a fresh interpreter at the repository root: argv = JSON list of [kind, target]; prints JSON
# {target: help text}. A script that fails before printing its help gets its error text instead.
HELP_COLLECTOR = r"""
import contextlib, io, json, runpy, sys, traceback
sys.path.insert(0, '.')
out = {}
for kind, target in json.loads(sys.argv[1]):
    buf = io.StringIO()
    sys.argv = [target, '--help']
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            if kind == 'module':
                runpy.run_module(target, run_name='__main__', alter_sys=True)
            else:
                runpy.run_path(target, run_name='__main__')
    except SystemExit:
        pass
    except BaseException:
        buf.write('HELP FAILED\n' + traceback.format_exc())
    out[target] = buf.getvalue()
sys.stdout.write(json.dumps(out))
"""


@dataclass
class Command:
    """One shell command of a README code block."""

    text: str
    kind: str = ""  # "script" (a .py file), "module" (python -m), "shell" (bash X.sh) or "" (other)
    target: str = ""  # the file or module name
    flags: List[str] = field(default_factory=list)
    configs: List[str] = field(default_factory=list)


def code_blocks(markdown: str) -> List[str]:
    """The contents of the fenced code blocks of ``markdown``."""
    return FENCE.findall(markdown)


def shell_lines(block: str) -> List[str]:
    """The logical lines of a code block: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", block)
    lines = []
    for line in joined.splitlines():
        tokens = shlex.split(line, comments=True)
        if tokens:
            lines.append(shlex.join(tokens))
    return lines


def parse_command(tokens: List[str]) -> Command:
    """Classify one command's tokens (see the module docstring)."""
    cmd = Command(" ".join(tokens))
    cmd.configs = [m.group(1) for tok in tokens for m in [CONFIG_PATH.search(tok)] if m]
    words = [t for t in tokens if not re.match(r"^[A-Z_][A-Z0-9_]*=", t)]  # drop VAR=value prefixes
    if words[:1] == ["nice"]:
        words = words[3:] if words[1:2] == ["-n"] else words[1:]
    if not words:
        return cmd
    head = Path(words[0]).name
    start = None
    if head.startswith("python") and words[1:2] == ["-m"] and len(words) > 2:
        cmd.kind, cmd.target, start = "module", words[2], 3
    elif head in ("bash", "sh") and len(words) > 1:
        cmd.kind, cmd.target, start = "shell", words[1], 2
    elif head.startswith("python") or head == "torchrun" or words[:2] == ["accelerate", "launch"]:
        for i, tok in enumerate(words[1:], 1):  # the launcher's own options come before the script
            if tok.endswith(".py"):
                cmd.kind, cmd.target, start = "script", tok, i + 1
                break
    if start is not None:
        cmd.flags = [t.split("=", 1)[0] for t in words[start:] if re.match(r"^--?[A-Za-z]", t)]
    return cmd


def readme_commands(markdown: str) -> List[Command]:
    """Every command of every code block of ``markdown``."""
    commands = []
    for block in code_blocks(markdown):
        for line in shell_lines(block):
            tokens = shlex.split(line)
            part: List[str] = []
            for tok in tokens + [";"]:
                if tok in SEPARATORS:
                    if part:
                        commands.append(parse_command(part))
                    part = []
                else:
                    part.append(tok)
    return commands


def module_file(name: str) -> Path:
    """The file ``python -m name`` runs (module.py, or the package's __main__.py / __init__.py)."""
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py", base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return base.with_suffix(".py")


def collect_help(commands: List[Command]) -> Dict[str, str]:
    """``--help`` output of every Python script and module in ``commands`` (one subprocess)."""
    targets = sorted(
        {
            (c.kind, c.target)
            for c in commands
            if c.kind in ("script", "module")
            and (
                c.kind == "module"
                and module_file(c.target).is_file()
                or c.kind == "script"
                and (REPO_ROOT / c.target).is_file()
            )
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", HELP_COLLECTOR, json.dumps(targets)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def has_word(text: str, flag: str) -> bool:
    """``flag`` in ``text`` as a whole option name (not a prefix of a longer one)."""
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def problems(commands: List[Command], helps: Dict[str, str]) -> List[str]:
    """One line per script, module, config path or flag named in ``commands`` that does not exist."""
    found = []
    for c in commands:
        for cfg in c.configs:
            if not (REPO_ROOT / cfg).is_file():
                found.append(f"{c.text}: config {cfg} does not exist")
        if c.kind == "module":
            path = module_file(c.target)
        elif c.kind in ("script", "shell"):
            path = REPO_ROOT / c.target
        else:
            continue
        if not path.is_file():
            found.append(f"{c.text}: {c.kind} {c.target} does not exist")
            continue
        text = path.read_text() if c.kind == "shell" else helps.get(c.target, "")
        if "HELP FAILED" in text:
            found.append(f"{c.text}: {c.target} --help failed: {text.splitlines()[-1]}")
            continue
        for flag in c.flags:
            if not has_word(text, flag):
                where = "its text" if c.kind == "shell" else "its --help"
                found.append(f"{c.text}: flag {flag} of {c.target} is not in {where}")
    return found


@pytest.fixture(scope="module")
def commands() -> List[Command]:
    return readme_commands(README.read_text())


@pytest.fixture(scope="module")
def helps(commands) -> Dict[str, str]:
    return collect_help(commands)


def test_readme_commands_name_existing_scripts_configs_and_flags(commands, helps):
    """The README's code blocks name only scripts, modules, configs and flags that exist."""
    named = {c.target for c in commands if c.kind}
    # the parser found the README's main entry points (an empty parse would pass the check vacuously)
    assert {"inference_difface.py", "main.py", "train_SDE.py", "train_DBLM.py"} <= named, named
    assert sum(len(c.flags) for c in commands) >= 20
    assert problems(commands, helps) == []


def test_checker_reports_a_missing_flag_script_module_and_config(helps):
    """The same check on made-up commands: each kind of drift gives its one line."""
    fake = """```bash
torchrun --nproc_per_node=2 inference_difface.py -i IN -o OUT --no_such_flag --config configs/sample/none.yaml
python -m models.no_such_module --x
python scripts/no_such_script.py
accelerate launch --cpu train_SDE.py --config configs/train/train_SDE.yaml \\
    --resume none
```"""
    cmds = readme_commands(fake)
    assert [c.kind for c in cmds] == ["script", "module", "script", "script"]
    assert cmds[0].flags == ["-i", "-o", "--no_such_flag", "--config"]  # torchrun's own option is not the script's
    assert cmds[3].flags == ["--config", "--resume"]
    found = problems(cmds, helps)
    assert any("flag --no_such_flag of inference_difface.py" in p for p in found), found
    assert any("config configs/sample/none.yaml does not exist" in p for p in found), found
    assert any("module models.no_such_module does not exist" in p for p in found), found
    assert any("script scripts/no_such_script.py does not exist" in p for p in found), found
    messages = [p.split(": ", 1)[1] for p in found]
    assert len(messages) == 4, messages  # nothing about -i, -o, --config, --resume or train_SDE.yaml, which exist


def test_flag_match_is_a_whole_option_name():
    """``--config`` is not found inside ``--config_dir`` or ``--cfg-config``; ``-i`` not inside ``-i_hq``."""
    assert has_word("  --config CONFIG  the file", "--config")
    assert not has_word("  --config_dir DIR", "--config")
    assert not has_word("  --cfg-config X", "--config")
    assert has_word("  -i INPUT, --in INPUT", "-i")
    assert not has_word("  -i_hq INPUT_HQ", "-i")
