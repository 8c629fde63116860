"""Every command the README and the docs show exists, flags included: each line of a fenced
``bash`` block, and each inline code span that starts with a program of this project, is parsed
by the program it names, without running it. ``bonito-repro COMMAND ...`` (and ``python -m
bonito_repro COMMAND``, and ``python -m bonito_repro.MODULE``) by the command's own argparse parser,
stopped right after parsing; ``bonito-repro run ...`` by run's parser, the rest of its line by
Snakemake's as below; ``snakemake ...`` by Snakemake's parser, its profiles, config files
under config/ and rule names checked too; ``make TARGET VAR=...`` against the Makefile's targets
and variables; ``hf SUB --flag`` against ``hf SUB --help``; ``python -c`` and ``python`` blocks by
importing what they import."""
from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
import subprocess

import pytest

from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`((?:[^`\n]|\n(?!\n))+)`(?!`)")  # a span may wrap, not across a blank line
BIN = REPO / ".venv" / "bin"
# programs whose commands are checked here; an inline code span is a command when it starts with one
PYTHONS = {"python", "python3", ".venv/bin/python", ".venv-gpu/bin/python", ".venv-vllm/bin/python"}
SNAKEMAKES = {"snakemake", ".venv/bin/snakemake", ".venv-gpu/bin/snakemake"}
BONITO_REPROS = {"bonito-repro", ".venv/bin/bonito-repro", ".venv-gpu/bin/bonito-repro"}
PROGRAMS = PYTHONS | SNAKEMAKES | BONITO_REPROS | {"make", "hf", "mkdocs", ".venv/bin/mkdocs"}
# shell words that carry no flag of this project
UNCHECKED = {"cd", "export", "git", "rm"}


def fenced_lines(text: str) -> list[str]:
    """The command lines of the text's ``bash`` blocks, continuation lines joined."""
    lines = []
    for language, body in FENCE.findall(text):
        if language in ("bash", "sh", "shell"):
            lines += [line for line in body.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def inline_commands(text: str) -> list[str]:
    prose = FENCE.sub("", text)
    spans = (" ".join(span.split()) for span in INLINE.findall(prose))
    return [span for span in spans if span.split()[0] in PROGRAMS]


def simple_commands(line: str) -> list[list[str]]:
    """A shell line's simple commands (split at ;, &&, || and |), comments and leading variable
    assignments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in lexer:
        if set(token) <= set(";&|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    commands = [[t for i, t in enumerate(c) if not (re.match(r"^\w+=", t) and all(re.match(r"^\w+=", u) for u in c[:i + 1]))]
                for c in commands]
    return [c for c in commands if c]


def shown_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for line in fenced_lines(text) + inline_commands(text):
            found += [(f"{doc.relative_to(REPO)}: {line.strip()}", command) for command in simple_commands(line)]
    return found


# --- the checkers: each returns a problem or None

class Parsed(Exception):
    """Raised right after an argparse parser accepted the command line: nothing runs."""


def parse_with_the_module(module_name: str, argv: list[str], monkeypatch, capsys) -> str | None:
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    module = importlib.import_module(module_name)
    if not hasattr(module, "main"):  # a package run with -m: its __main__
        module = importlib.import_module(f"{module_name}.__main__")
    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        try:
            status = module.main(argv)
        except Parsed:
            return None
        except SystemExit as exit_:
            if exit_.code == 0:  # --help or --version, printed while parsing
                capsys.readouterr()
                return None
            return f"exit {exit_.code}: {capsys.readouterr().err.strip()[-400:]}"
    return f"no parser accepted it (exit {status}): {capsys.readouterr().err.strip()[-400:]}"


def check_python(argv: list[str], monkeypatch, capsys) -> str | None:
    if not argv:  # the interpreter named in prose
        return None
    if argv[:2] == ["-m", "bonito_repro"]:
        return check_bonito_repro(argv[2:], monkeypatch, capsys)
    if argv[:1] == ["-m"] and argv[1].split(".")[0] == "bonito_repro":
        return parse_with_the_module(argv[1], argv[2:], monkeypatch, capsys)
    if argv[:1] == ["-c"]:
        return check_imports(argv[1])
    return f"not a command this test knows: python {' '.join(argv)}"


def check_bonito_repro(argv: list[str], monkeypatch, capsys) -> str | None:
    """A command of the program; `run` by its own options, then what it passes to Snakemake."""
    if argv[:1] != ["run"]:
        return parse_with_the_module("bonito_repro.__main__", argv, monkeypatch, capsys)
    from bonito_repro.workflow.run import split_arguments

    try:
        options, snakemake_args = split_arguments(argv[1:])
    except SystemExit as exit_:
        return f"exit {exit_.code}: {capsys.readouterr().err.strip()[-400:]}"
    ours = (["--profile", options.profile] if options.profile else []) + \
        (["--configfile", *map(str, options.configfile)] if options.configfile else [])
    return check_snakemake([*snakemake_args, *ours], capsys)


def check_imports(code: str) -> str | None:
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
            if missing:
                return f"{node.module} has no {missing}"
    return None


def rule_names() -> set[str]:
    texts = [(REPO / "Snakefile").read_text()] + [p.read_text() for p in (REPO / "rules").glob("*.smk")]
    return {name for text in texts for name in re.findall(r"^(?:local)?rule (\w+):", text, re.M)}


def check_snakemake(argv: list[str], capsys) -> str | None:
    from snakemake.cli import get_argument_parser

    try:
        args = get_argument_parser().parse_args(argv)
    except SystemExit as exit_:
        return f"exit {exit_.code}: {capsys.readouterr().err.strip()[-400:]}"
    problems = [f"no profile {p}/" for p in args.profile or [] if not (REPO / p / "config.yaml").is_file()]
    problems += [f"no config file {path}" for path in args.configfile or []
                 if str(path).startswith("config/") and not (REPO / path).is_file()]
    rules = rule_names()
    named = {t for t in args.targets if "/" not in t and "." not in t} | set(args.until or ()) | set(args.forcerun or ())
    problems += [f"no rule {name}" for name in sorted(named - rules)]
    return "; ".join(problems) or None


def makefile_names() -> tuple[set[str], set[str]]:
    text = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M))
    variables = set(re.findall(r"^([A-Z][A-Z_]*)\s*[?:]?=", text, re.M))
    return targets, variables


def check_make(argv: list[str]) -> str | None:
    targets, variables = makefile_names()
    problems = []
    for word in argv:
        if "=" in word:
            name = word.split("=", 1)[0]
            problems += [] if name in variables else [f"the Makefile sets no variable {name}"]
        elif not word.startswith("-"):
            problems += [] if word in targets else [f"the Makefile has no target {word}"]
    return "; ".join(problems) or None


def check_hf(argv: list[str]) -> str | None:
    sub = [word for word in argv if not word.startswith("-")][:1]
    help_ = subprocess.run([str(BIN / "hf"), *sub, "--help"], capture_output=True, text=True,
                           env={"HF_HUB_DISABLE_UPDATE_CHECK": "1", "PATH": str(BIN)})
    if help_.returncode != 0:
        return f"hf {' '.join(sub)} --help failed: {help_.stderr[-300:]}"
    flags = [word.split("=")[0] for word in argv if word.startswith("--")]
    return "; ".join(f"hf {sub[0]} has no {flag}" for flag in flags if flag not in help_.stdout) or None


def check_mkdocs(argv: list[str]) -> str | None:
    return None if argv[:1] and argv[0] in {"build", "serve"} else f"mkdocs {' '.join(argv)}"


def check(command: list[str], monkeypatch, capsys) -> str | None:
    program, argv = command[0], command[1:]
    if program in UNCHECKED:
        return None
    if program in PYTHONS:
        return check_python(argv, monkeypatch, capsys)
    if program in BONITO_REPROS:
        return check_bonito_repro(argv, monkeypatch, capsys)
    if program in SNAKEMAKES:
        return check_snakemake(argv, capsys)
    if program == "make":
        return check_make(argv)
    if program == "hf":
        return check_hf(argv)
    if program in {"mkdocs", ".venv/bin/mkdocs"}:
        return check_mkdocs(argv)
    if program == "srun":  # its options (each --name=value), then the command a compute node runs
        rest = [word for word in argv if not word.startswith("-")]
        return check(rest, monkeypatch, capsys) if rest else "srun runs no command"
    return f"no checker for the program {program!r}: add one to tests/test_doc_commands.py"


def test_every_command_shown_in_the_readme_and_the_docs_exists(monkeypatch, capsys):
    commands = shown_commands()
    assert len(commands) > 30, commands  # the parser found the commands
    problems = []
    for where, command in commands:
        problem = check(command, monkeypatch, capsys)
        if problem:
            problems.append(f"{where}\n    {shlex.join(command)}\n    -> {problem}")
    assert not problems, "commands the docs show that do not run as shown:\n" + "\n".join(problems)


def test_python_blocks_import_what_exists():
    for doc in DOCS:
        for language, body in FENCE.findall(doc.read_text(encoding="utf-8")):
            if language == "python":
                imports = "\n".join(line for line in body.splitlines() if line.startswith(("from ", "import ")))
                assert check_imports(imports) is None, f"{doc.name}: {check_imports(imports)}"


@pytest.mark.parametrize("command, expected", [
    (["python", "-m", "bonito_repro", "corpus", "--text", "t.txt"], "arguments are required"),
    (["bonito-repro", "cost", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["bonito-repro", "run", "--scale", "galactic"], "invalid choice: 'galactic'"),
    (["bonito-repro", "run", "-n", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["bonito-repro", "run", "no_such_rule"], "no rule no_such_rule"),
    (["bonito-repro", "list", "planets"], "invalid choice: 'planets'"),
    (["bonito-repro", "run", "--configfile", "config/nothing.yaml"], "no config file config/nothing.yaml"),
    (["python", "-m", "bonito_repro", "no-such-stage"], "no parser accepted it"),
    (["python", "-m", "bonito_repro", "ablations", "jobs", "--scale", "galactic"], "invalid choice: 'galactic'"),
    (["python", "-c", "from bonito_repro.config import no_such_name"], "has no ['no_such_name']"),
    (["python", "-m", "bonito_repro.localhub", "serve", "/tmp/hub", "--no-port"], "unrecognized arguments"),
    (["snakemake", "--profile", "local", "--no-such-flag"], "unrecognized arguments"),
    (["snakemake", "--profile", "nowhere"], "no profile nowhere/"),
    (["snakemake", "--profile", "local", "-R", "no_such_rule"], "no rule no_such_rule"),
    (["snakemake", "--configfile", "config/nothing.yaml"], "no config file config/nothing.yaml"),
    (["make", "no-such-target"], "no target no-such-target"),
    (["make", "setup", "NO_SUCH_VARIABLE=1"], "no variable NO_SUCH_VARIABLE"),
    (["hf", "upload", "user/set", "folder", "--no-such-flag"], "has no --no-such-flag"),
    (["curl", "https://example.org"], "no checker for the program"),
])
def test_the_checks_catch_a_command_that_does_not_exist(command, expected, monkeypatch, capsys):
    assert expected in (check(command, monkeypatch, capsys) or "")


def test_shell_lines_split_into_their_commands():
    assert simple_commands('SLURM_PARTITION=gpu make rehearsal REHEARSAL_ARGS="--profile slurm"  # on Slurm') == [
        ["make", "rehearsal", "REHEARSAL_ARGS=--profile slurm"]]
    assert simple_commands("cd my && snakemake -n; make run") == [["cd", "my"], ["snakemake", "-n"], ["make", "run"]]
    text = "Run `snakemake --profile local -n` or `make run`; `config.yaml` is data.\n```bash\nmake a \\\n  B=1\n```\n"
    assert inline_commands(text) == ["snakemake --profile local -n", "make run"]
    assert fenced_lines(text) == ["make a    B=1"]
