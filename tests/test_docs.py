"""The README and the documentation site: the README stays a short user README whose links lead
into docs/; the site (mkdocs.yml: the README as its home page, docs/*.md) builds with no warning;
the protocol lives in the repository: nothing cites a file outside it, and every citation of
docs/protocol.md (``docs/protocol.md, section 8.1, D10``, ``docs/protocol.md#d10``, from a page
beside it ``protocol.md#d10``) points at a section or deviation that exists; the pages hold what
the tests name (the open deviations, the drop reasons, the reliability promises)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PROTOCOL = DOCS / "protocol.md"
README_MAX_LINES = 250
# The facts sheets the project was first written from; users of the repository do not have them.
OUTSIDE = re.compile(r"PAPER_FACTS|HUB_FACTS|STACK_NOTES|\.\./shared|\bdecisions? \d")
# "docs/protocol.md" followed by sections and deviations: ", section 4, D2, D3", ", sections 8 and 9"
CITATION = re.compile(r"docs/protocol\.md((?:(?:,|;| |and|sections?)*(?:D\d+|\d+(?:\.\d+)?)\b)+)")
LINK = re.compile(r"(?<![\w/])(?:docs/)?protocol\.md#([\w-]+)")
SECTION_HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)
DEVIATION_HEADING = re.compile(r'^<a id="d(\d+)"></a>\n### D(\d+)\. (.+)$', re.MULTILINE)
RESOLVED = " (resolved)"
DEVIATION_ITEM = re.compile(r"^- D(\d+) \[(.+?)\]\(protocol\.md#d(\d+)\)", re.MULTILINE)


def tracked_texts() -> dict[str, str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = [p for p in out.decode().split("\0") if p]
    return {p: (REPO / p).read_text(encoding="utf-8", errors="replace") for p in paths if (REPO / p).is_file()}


def protocol_index() -> tuple[set[str], dict[int, str], set[str]]:
    """Section numbers, deviation number -> title, and explicit anchors of docs/protocol.md."""
    text = PROTOCOL.read_text(encoding="utf-8")
    sections = set(SECTION_HEADING.findall(text))
    deviations: dict[int, str] = {}
    for anchor, number, title in DEVIATION_HEADING.findall(text):
        assert anchor == number, f"D{number} has anchor d{anchor}"
        assert int(number) not in deviations, f"D{number} is numbered twice"
        deviations[int(number)] = title
    anchors = set(re.findall(r'<a id="([\w-]+)"></a>', text))
    return sections, deviations, anchors


def test_nothing_cites_files_outside_the_repository():
    this = Path(__file__).resolve().relative_to(REPO).as_posix()
    hits = [f"{path}:{n}: {line.strip()}"
            for path, text in tracked_texts().items() if not path.startswith("docs/") and path != this
            for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "cite docs/protocol.md instead:\n" + "\n".join(hits)


def test_deviations_are_numbered_once_from_one():
    _, deviations, _ = protocol_index()
    assert deviations, "docs/protocol.md lists no deviation"
    assert sorted(deviations) == list(range(1, len(deviations) + 1))
    text = PROTOCOL.read_text(encoding="utf-8")
    assert len(re.findall(r"^### D\d+", text, re.MULTILINE)) == len(deviations), \
        "every deviation heading needs its anchor line <a id=\"dN\"></a> right above it"


def test_every_citation_of_the_protocol_exists():
    sections, deviations, anchors = protocol_index()
    missing = []
    for path, text in tracked_texts().items():
        for match in CITATION.finditer(text):
            refs = match.group(1)
            missing += [f"{path}: D{d}" for d in re.findall(r"D(\d+)", refs) if int(d) not in deviations]
            missing += [f"{path}: section {s}" for s in re.findall(r"(?<![D\d.])(\d+(?:\.\d+)?)", refs)
                        if s not in sections]
        missing += [f"{path}: #{a}" for a in LINK.findall(text) if a not in anchors]
    protocol = PROTOCOL.read_text(encoding="utf-8")
    missing += [f"docs/protocol.md: D{d}" for d in re.findall(r"\bD(\d+)\b", protocol) if int(d) not in deviations]
    missing += [f"docs/protocol.md: section {s}" for s in re.findall(r"§(\d+(?:\.\d+)?)", protocol)
                if s not in sections]
    assert not missing, "cited but not in docs/protocol.md:\n" + "\n".join(sorted(set(missing)))


def test_the_differences_page_lists_every_open_deviation_with_its_title():
    """A resolved entry keeps its number in docs/protocol.md (its title ends "(resolved)") and
    leaves the list in docs/differences.md."""
    _, deviations, _ = protocol_index()
    listed = DEVIATION_ITEM.findall((DOCS / "differences.md").read_text(encoding="utf-8"))
    assert all(number == anchor for number, _, anchor in listed)
    assert {int(number): title for number, title, _ in listed} == {
        number: title for number, title in deviations.items() if not title.endswith(RESOLVED)}


def test_the_workflow_page_names_every_reason_the_funnel_and_ctga_drop_rows_for():
    """A user reading why rows went missing finds every reason a manifest can give."""
    from bonito_repro.generate.funnel import REASONS

    readme = (DOCS / "workflow.md").read_text(encoding="utf-8")
    statuses = set(re.findall(r'"(render_error|empty_\w+)"', (REPO / "src/bonito_repro/ctga/render.py").read_text()))
    assert statuses == {"render_error", "empty_context", "empty_target"}
    missing = [reason for reason in [*REASONS, *sorted(statuses)] if f"`{reason}`" not in readme]
    assert not missing, f"docs/workflow.md does not name these drop reasons: {missing}"


def test_each_reliability_promise_names_tests_that_exist():
    """docs/reliability.md's list of promises: each names at least one test, and each named test
    is defined in the file it names."""
    page = (DOCS / "reliability.md").read_text()
    section = page.split("\n## What is promised", 1)[1].split("\n## Not guaranteed", 1)[0]
    promises = re.split(r"\n- ", section)[1:]
    assert len(promises) >= 8, promises
    for promise in promises:
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", promise)
        assert named, f"a promise names no test: {promise[:80]}"
        for path, test in named:
            assert re.search(rf"^def {test}\(", (REPO / path).read_text(), re.M), f"{path}::{test} does not exist"


# --- the README and the site

def test_the_readme_is_a_short_user_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < README_MAX_LINES, "move the detail into a page under docs/"
    # the paper and what it published, and that the paper scale never ran on a GPU, near the top
    for link in ("arxiv.org/abs/2402.18334", "aclanthology.org/2024.findings-acl.748",
                 "huggingface.co/BatsResearch/bonito-v1", "huggingface.co/datasets/BatsResearch/ctga-v1",
                 "huggingface.co/datasets/BatsResearch/bonito-experiment)",
                 "huggingface.co/datasets/BatsResearch/bonito-experiment-eval"):
        assert link in readme, link
    assert "**The paper scale has not run on a GPU.**" in "\n".join(readme.splitlines()[:40])
    assert "@inproceedings{nayak-etal-2024-learning" in readme and "`CITATION.cff`" in readme


def test_every_page_is_in_the_sites_navigation_and_every_readme_link_is_a_page():
    """A page outside the nav is unreachable on the site; a README link outside docs/ would point
    outside the site (the home page is the README: docs/hooks/readme.py)."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())  # only plain YAML in it

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from pages(value) if isinstance(value, list) else [value]

    in_nav = set(pages(config["nav"]))
    assert in_nav == {p.name for p in DOCS.glob("*.md")} | {"index.md"}
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", (REPO / "README.md").read_text(encoding="utf-8"))
    local = [link for link in links if not link.startswith("https://")]
    assert local and all(link.startswith("docs/") and (REPO / link).is_file() for link in local), local


def test_citation_cff_names_the_project_and_the_paper():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert {"message", "title", "authors", "license"} <= set(citation)
    version = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert citation["version"] == version
    (paper,) = citation["references"]
    assert paper["doi"] == "10.18653/v1/2024.findings-acl.748"


def test_the_site_builds_without_a_warning(tmp_path):
    """mkdocs build --strict: a broken link or anchor, a page outside the nav or a bad config
    fails the build (mkdocs.yml's validation settings make each a warning)."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "WARNING" not in result.stderr, result.stderr[-3000:]
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "The paper scale has not run on a GPU." in home and 'href="cluster/"' in home
    assert (tmp_path / "site" / "reliability" / "index.html").is_file()
