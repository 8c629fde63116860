"""The rule files' shape: each reads only what common.smk and the package give it, no path under
results/ is spelled outside bonito_repro.core.layout, every rule that runs a command keeps a log
and a benchmark, and rules stay short (issue #26's bounds)."""
from __future__ import annotations

import ast
import io
import re
import statistics
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from conftest import REPO

RULE_FILES = sorted((REPO / "rules").glob("*.smk"))
RULE_HEAD = re.compile(r"^(?:rule (?P<name>\w+):|use rule (?P<base>\w+) as (?P<alias>\w+) with:)")
DIRECTIVE = re.compile(r"^    (\w+):")
RESULTS_PATH = re.compile(r"(^|[^\w.])results/")


@dataclass
class Rule:
    name: str
    file: str
    lines: int
    directives: set[str]
    base: str | None = None
    local: bool = False


@dataclass
class RuleFile:
    path: Path
    rules: list[Rule] = field(default_factory=list)
    defines: set[str] = field(default_factory=set)


def parse(path: Path) -> RuleFile:
    """A rule file's rules (with their length: the header to the last non-blank line of the block)
    and the global names it defines (top-level assignments and functions)."""
    text = path.read_text()
    lines = text.split("\n")
    local = {name for block in re.findall(r"^localrules:\n((?:    \w+,?\n)+)", text, re.M)
             for name in re.findall(r"\w+", block)}
    parsed = RuleFile(path)
    parsed.defines = set(re.findall(r"^([A-Za-z_]\w*)\s*=(?!=)", text, re.M)) | set(re.findall(r"^def (\w+)", text, re.M))
    for i, line in enumerate(lines):
        head = RULE_HEAD.match(line)
        if not head:
            continue
        end = i + 1
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" ")):
            end += 1
        while not lines[end - 1].strip():
            end -= 1
        directives = {m.group(1) for row in lines[i + 1:end] if (m := DIRECTIVE.match(row))}
        name = head["name"] or head["alias"]
        parsed.rules.append(Rule(name, path.name, end - i, directives, head["base"], name in local))
    return parsed


def all_rules() -> dict[str, Rule]:
    return {rule.name: rule for path in [*RULE_FILES, REPO / "Snakefile"] for rule in parse(path).rules}


def directives_of(rule: Rule, rules: dict[str, Rule]) -> set[str]:
    """A rule's directives, a `use rule`'s inherited from its base."""
    return rule.directives | (directives_of(rules[rule.base], rules) if rule.base else set())


def test_every_rule_that_runs_a_command_has_a_log_and_a_benchmark():
    rules = all_rules()
    commands = {name: rule for name, rule in rules.items() if "shell" in directives_of(rule, rules)}
    assert len(commands) >= 25, sorted(commands)
    missing = {name: sorted({"log", "benchmark"} - directives_of(rule, rules)) for name, rule in commands.items()}
    assert not {name: m for name, m in missing.items() if m}
    # the rest are the Snakefile's targets, which only request files
    assert {name for name, rule in rules.items() if name not in commands} == \
        {"all", "ablations", "ablation_generators", "ablation_size", "ablation_domain"}


def crossings(owners: list[Path], readers: list[Path]) -> list[tuple[str, str, str]]:
    """(name, file defining it, another file reading it) for each global a rule file defines,
    comments aside."""
    texts = {path: re.sub(r"#[^\n]*", "", path.read_text()) for path in readers}
    return [(name, owner.name, reader.name) for owner in owners for name in parse(owner).defines
            for reader, text in texts.items() if reader != owner and re.search(rf"\b{name}\b", text)]


def test_no_rule_file_reads_a_global_of_another():
    """Each rule file reads what common.smk and the package give it, never another rule file's
    names (a clash once emptied a target list)."""
    owners = [path for path in RULE_FILES if path.name != "common.smk"]
    assert not crossings(owners, [*RULE_FILES, REPO / "Snakefile"])


def test_a_planted_crossing_is_found(tmp_path):
    owner, reader = tmp_path / "a.smk", tmp_path / "b.smk"
    owner.write_text("SHARED = 1  # SHARED\n\n\nrule a:\n    output: 'x'\n")
    reader.write_text("# SHARED in a comment is no read\nrule b:\n    input: SHARED\n")
    assert crossings([owner], [owner, reader]) == [("SHARED", "a.smk", "b.smk")]
    reader.write_text("# SHARED in a comment is no read\n")
    assert crossings([owner], [owner, reader]) == []


def _python_paths(path: Path):
    """(line, text) of each string in a Python file that spells a path under results/: a string
    holding `results/`, or "results" joined to a path (`dir / "results"`); docstrings aside."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if RESULTS_PATH.search(node.value):
                yield node.lineno, node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value == "results":
                    yield node.lineno, "… / 'results'"


def _rule_file_paths(path: Path):
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.STRING and (RESULTS_PATH.search(tok.string) or "{R}/" in tok.string):
            yield tok.start[0], tok.string


def test_no_results_path_is_spelled_outside_the_layout_module():
    layout = REPO / "src" / "bonito_repro" / "core" / "layout.py"
    python = [p for p in [*(REPO / "src" / "bonito_repro").rglob("*.py"), *(REPO / "bench").glob("*.py")] if p != layout]
    spelled = [(str(p.relative_to(REPO)), line, text) for p in python for line, text in _python_paths(p)]
    spelled += [(str(p.relative_to(REPO)), line, text) for p in [*RULE_FILES, REPO / "Snakefile"]
                for line, text in _rule_file_paths(p)]
    assert not spelled


def test_the_path_scan_finds_a_planted_path(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('"""results/ in a docstring is fine."""\nA = "results/eval/x.json"\nB = root / "results"\n')
    assert [line for line, _ in _python_paths(planted)] == [2, 3]


def test_rules_stay_short():
    """common.smk holds only validation and the few shared helpers, and the median rule that runs
    on a compute node reads in about a screen (issue #26: at most 16 lines)."""
    assert len((REPO / "rules" / "common.smk").read_text().splitlines()) < 180
    compute = [rule.lines for path in RULE_FILES for rule in parse(path).rules if not rule.local]
    assert len(compute) >= 10
    assert statistics.median(compute) <= 16, sorted(compute)


def _doubled_braces_in_plain_strings(path: Path):
    """Lines where a plain (not f-) string holds ``{{``: Snakemake formats it once, so the command
    receives a literal ``{params...}`` (an f-string's ``{{`` is the right spelling; a plain string
    beside one is a separate literal)."""
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        prefix = re.match(r"[A-Za-z]*", tok.string).group().lower()
        if tok.type == tokenize.STRING and "f" not in prefix and "{{" in tok.string:
            yield tok.start[0]


def test_no_plain_string_in_a_rule_doubles_its_braces(tmp_path):
    found = {str(p.relative_to(REPO)): lines for p in [*RULE_FILES, REPO / "Snakefile"]
             if (lines := list(_doubled_braces_in_plain_strings(p)))}
    assert not found, f"plain strings with {{{{ (the command gets a literal placeholder): {found}"
    planted = tmp_path / "planted.smk"
    planted.write_text('x = (f"{{input}}"\n     " --params {{params.hp:q}}")\n')
    assert list(_doubled_braces_in_plain_strings(planted)) == [2]
