"""MkDocs hook: the site's home page is README.md, so the README is written once. Its links into
docs/ (``docs/cluster.md``) become the site's (``cluster.md``); a link to anything else in the
repository would point outside the site, which the strict build reports as a warning."""
from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_as_page(text: str) -> str:
    return text.replace("](docs/", "](")


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "index.md", content=readme_as_page(README.read_text(encoding="utf-8"))))
    return files
