"""A Hugging Face Hub-compatible HTTP server on loopback, serving repositories from plain folders.

Enough of the Hub for ``huggingface_hub`` and ``datasets`` to load models and datasets from it
with ``HF_ENDPOINT=http://127.0.0.1:PORT`` exactly as they load them from huggingface.co, so that
the paper-scale loaders run in tests and rehearsals with no network. Standard library only.

Folder layout (``python -m bonito_repro.localhub build`` writes one)::

    ROOT/tokens.json                          {"<token>": "<user name>"}: the accepted tokens
    ROOT/gone.json                            {"datasets": {"NS/NAME": "why"}, "models": {...}}:
                                              repositories gone from the Hub (404 RepoNotFound)
    ROOT/{models,datasets}/NS/NAME/repo.json  optional: {"gated": "manual"}
    ROOT/{models,datasets}/NS/NAME/REV/...    the files of revision REV (URL-quoted: refs%2Fpr%2F5)
    ROOT/{models,datasets}/NS/NAME/.commits/SHA/...
                                              earlier commits, readable by their sha only

Each revision folder is one commit: its sha is derived from the repository, revision name and
file contents, so it changes when the files do. Revisions named ``refs/convert/*`` are listed as
converts, ``refs/pr/N`` as pull requests, any other name as a branch. A branch moves as on the Hub
(``move_branch``, then a server started on the folder, or a commit it answers): its former commit stays readable by
its sha under ``.commits/``, and the branch points at a new commit.

Endpoints: every one ``huggingface_hub`` and ``datasets`` call in this project's downloads (the
last test of tests/test_hub.py lists them), and those of the ``HfApi`` calls a person checking a
repository makes (refs, paths-info, whoami, auth-check). Anything else is a 404 that the request
log marks ``endpoint: null``, so a test can tell a missing endpoint from a real 404. Listings come
in one page (the repositories are small; the Hub pages at 1,000 entries).

- ``whoami``: ``GET /api/whoami-v2`` (token check; ``HfApi.whoami``).
- ``agent_harnesses``: ``GET /api/agent-harnesses`` (``huggingface_hub`` fetches this registry for
  its user-agent string once a day; served empty).
- ``repo_info``: ``GET /api/{models,datasets}/ID`` and ``.../revision/REV`` (``model_info``,
  ``dataset_info``; how this project resolves a revision to its sha, and how ``datasets`` finds
  the commit of a repo without a README), with ``sha``, ``siblings`` and ``gated``.
- ``tree``: ``GET /api/{type}s/ID/tree/REV[/PATH]?recursive=&expand=`` (``list_repo_tree``, and
  ``HfFileSystem`` listings behind ``datasets``' data-file globbing).
- ``paths_info``: ``POST /api/{type}s/ID/paths-info/REV`` (``get_paths_info``; ``HfFileSystem.info``).
- ``refs``: ``GET /api/{type}s/ID/refs[?include_prs=1]`` (``list_repo_refs``: branches, converts,
  pull requests).
- ``auth_check``: ``GET /api/{type}s/ID/auth-check`` (``HfApi.auth_check``).
- ``resolve``: ``HEAD``/``GET /[datasets/]ID/resolve/REV/PATH`` (``hf_hub_download``,
  ``snapshot_download``, ``HfFileSystem`` reads). Small files come back directly with
  ``X-Repo-Commit``, ``ETag`` (git blob sha1) and ``Content-Length``; LFS files (weights, parquet,
  arrow) answer 302 to the CDN origin with ``X-Linked-Etag`` (sha256), ``X-Linked-Size`` and
  ``X-Repo-Commit``, as huggingface.co does, so the libraries' redirect handling runs too.
- ``cdn``: ``HEAD``/``GET /blobs/SHA256`` on a second port (a different origin, as a CDN is, so
  the client drops the token there), with ``Range`` support.

And the calls of ``HfApi.upload_folder`` over the LFS protocol (``HF_HUB_DISABLE_XET=1``: the Hub's
Xet storage is not served here), each with a valid token:

- ``create_repo``: ``POST /api/repos/create`` (a new repository with ``.gitattributes`` on
  ``main``; 409 when it exists, which ``create_repo(exist_ok=True)`` accepts).
- ``validate_yaml``: ``POST /api/validate-yaml`` (a card's metadata; a ``license`` the Hub does not
  know, data/hub_licenses.tsv, is a 400 with the Hub's ``errors`` list).
- ``preupload``: ``POST /api/{type}s/ID/preupload/REV`` (each file ``lfs`` or ``regular`` by the
  suffixes above, with the oid it has on the revision, so an unchanged file is skipped).
- ``lfs_batch``: ``POST /[datasets/]ID.git/info/lfs/objects/batch`` (basic transfer: an upload and
  a verify action per object not yet stored).
- ``lfs_upload``: ``PUT /upload/SHA256`` on the CDN origin (the bytes, checked against the sha256).
- ``lfs_verify``: ``POST /api/lfs/verify/SHA256`` (the uploaded object's size).
- ``commit``: ``POST /api/{type}s/ID/commit/REV`` (NDJSON: ``file`` in base64, ``lfsFile`` by
  sha256, ``deletedFile``), which moves the branch as ``move_branch`` does.

Revisions may come URL-quoted in one path segment (``refs%2Fconvert%2Fparquet``, how the
libraries send them) or, for ``refs/convert/*`` and ``refs/pr/N``, unquoted (the Hub accepts both).
Errors carry the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``,
``GatedRepo``), which is how the libraries choose their exception. A repository in ``gone.json``
answers 404 ``RepoNotFound`` everywhere (a deleted repository; any other unknown one answers 401
``RepoNotFound``, the Hub's answer to a request without a token). The request log records the
``Range`` a partial answer (206) served, with the file's size, so a test can tell a footer read
from a download. A gated repository's metadata
(info, tree, refs) is public, its files need a valid ``Authorization: Bearer`` token (401
``GatedRepo`` without one); an unknown token is refused on every endpoint (401), as on the Hub.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

ENDPOINTS = ("whoami", "agent_harnesses", "repo_info", "tree", "paths_info", "refs", "auth_check",
             "resolve", "cdn", "create_repo", "validate_yaml", "preupload", "lfs_batch", "lfs_upload",
             "lfs_verify", "commit")
REPO_TYPES = {"models": "model", "datasets": "dataset"}
# what a Hub repository's default .gitattributes sends to LFS (the rest are plain git blobs)
LFS_SUFFIXES = {".arrow", ".bin", ".gguf", ".model", ".parquet", ".pt", ".safetensors"}
COMMIT_DATE = "2024-02-27T00:00:00.000Z"
_SPECIAL_REF = re.compile(r"^refs/(convert/[\w-]+|pr/\d+)$")
COMMITS_DIR = ".commits"   # a repository's earlier commits, one folder per sha
UPLOADS_DIR = ".uploads"   # LFS objects uploaded and not yet committed, one file per sha256


@dataclass(frozen=True)
class Blob:
    path: Path
    size: int
    oid: str          # git blob sha1
    sha256: str
    lfs: bool


@dataclass
class Revision:
    name: str
    sha: str
    files: dict[str, Blob]                        # path in repo -> blob
    dirs: set[str] = field(default_factory=set)   # every folder path, "" excluded


@dataclass
class Repo:
    type: str                                     # model | dataset
    id: str
    gated: str | bool
    revisions: dict[str, Revision]               # revision name -> revision
    commits: dict[str, Revision] = field(default_factory=dict)  # sha -> an earlier commit

    def find(self, revision: str) -> Revision | None:
        """A revision by name or by (full) commit sha, an earlier commit's included."""
        if revision in self.revisions:
            return self.revisions[revision]
        found = next((r for r in self.revisions.values() if r.sha == revision), None)
        return found or self.commits.get(revision)


def _blob(path: Path) -> Blob:
    data = path.read_bytes()
    return Blob(path=path, size=len(data), oid=hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                sha256=hashlib.sha256(data).hexdigest(), lfs=path.suffix in LFS_SUFFIXES)


def load_revision(repo_type: str, repo_id: str, rev_dir: Path, sha: str | None = None) -> Revision:
    """One revision folder: its files and its commit (``sha``, else derived from the repository,
    the revision's name and the files)."""
    name = unquote(rev_dir.name)
    files = {p.relative_to(rev_dir).as_posix(): _blob(p) for p in sorted(rev_dir.rglob("*")) if p.is_file()}
    digest = hashlib.sha1(f"{repo_type}\0{repo_id}\0{name}\0".encode())
    for path, blob in files.items():
        digest.update(f"{path}\0{blob.oid}\0".encode())
    dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    return Revision(name, sha or digest.hexdigest(), files, dirs)


def load_repo(repo_type: str, repo_dir: Path) -> Repo:
    """One repository folder: its revisions, earlier commits and gating."""
    repo_id = f"{repo_dir.parent.name}/{repo_dir.name}"
    meta_path = repo_dir / "repo.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    folders = [p for p in sorted(repo_dir.iterdir()) if p.is_dir() and p.name != COMMITS_DIR]
    revisions = {rev.name: rev for rev in (load_revision(repo_type, repo_id, p) for p in folders)}
    if "main" not in revisions:
        raise ValueError(f"{repo_dir}: a repository needs a main revision folder")
    earlier = sorted(p for p in (repo_dir / COMMITS_DIR).glob("*") if p.is_dir())
    commits = {p.name: load_revision(repo_type, repo_id, p, sha=p.name) for p in earlier}
    return Repo(repo_type, repo_id, meta.get("gated", False), revisions, commits)


def load_repos(root: Path) -> dict[tuple[str, str], Repo]:
    """Every repository under root, keyed by (type, id)."""
    return {(repo_type, f"{repo_dir.parent.name}/{repo_dir.name}"): load_repo(repo_type, repo_dir)
            for folder, repo_type in REPO_TYPES.items()
            for repo_dir in sorted(p for p in (root / folder).glob("*/*") if p.is_dir())}


def move_branch(root: str | Path, repo_type: str, repo_id: str, branch: str,
                files: dict[str, bytes | Path | None]) -> tuple[str, str]:
    """Commit ``files`` (path in the repository -> new content, or a file holding it, or None to
    delete) to a branch of a repository under ``root``, as a push to the Hub moves the branch: its
    former commit stays readable by its sha (under ``.commits/``). Returns (former sha, new sha);
    a server started on ``root`` afterwards serves the moved branch."""
    folder = {t: f for f, t in REPO_TYPES.items()}[repo_type]
    repo_dir = Path(root) / folder / repo_id
    branch_dir = repo_dir / quote(branch, safe="")
    if not branch_dir.is_dir():
        raise ValueError(f"{repo_type} {repo_id}: no branch {branch!r} under {root}")
    former = load_revision(repo_type, repo_id, branch_dir).sha
    kept = repo_dir / COMMITS_DIR / former
    if not kept.exists():
        shutil.copytree(branch_dir, kept)
    for path, content in files.items():
        target = branch_dir / path
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    return former, load_revision(repo_type, repo_id, branch_dir).sha


def known_licenses() -> set[str]:
    """The license identifiers the Hub accepts (the package's list, read without its imports)."""
    text = (Path(__file__).resolve().parents[1] / "data" / "hub_licenses.tsv").read_text(encoding="utf-8")
    return {line.split("\t")[0] for line in text.splitlines() if line and not line.startswith("#")}


def metadata_errors(content: str) -> list[str]:
    """What the Hub's card check would refuse in a README's metadata: a front matter that does not
    close, a ``license`` it does not know. (The YAML itself is not parsed: standard library only.)"""
    if not content.startswith("---"):
        return []
    head, sep, _ = content[3:].partition("\n---")
    if not sep:
        return ["the metadata block opened by --- is not closed"]
    licenses = re.findall(r"^license:\s*(\S+)\s*$", head, re.MULTILINE)
    return [f'"license" must be one of the Hub\'s license identifiers, not "{value}"'
            for value in licenses if value.strip("'\"") not in known_licenses()]


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit
        self.body = body or {}  # what the Hub's error body holds beside the message


class Hub:
    """The repositories, the accepted tokens and the request log of one server."""

    def __init__(self, root: Path, log_path: Path | None = None):
        self.root = root
        self.repos = load_repos(root)
        tokens = root / "tokens.json"
        self.tokens: dict[str, str] = json.loads(tokens.read_text()) if tokens.exists() else {}
        gone_path = root / "gone.json"
        gone = json.loads(gone_path.read_text()) if gone_path.exists() else {}
        self.gone = {(REPO_TYPES[folder], repo_id): why for folder, repos in gone.items() for repo_id, why in repos.items()}
        self.log_path = log_path
        self.cdn_base = ""        # set once the CDN port is bound
        self._lock = threading.Lock()
        self.blobs = {b.sha256: b for repo in self.repos.values()
                      for rev in [*repo.revisions.values(), *repo.commits.values()] for b in rev.files.values() if b.lfs}

    def write_user(self, headers) -> str:
        """The user of a write request: a valid token is required."""
        user = self.user(headers)
        if user is None:
            raise HubError(401, None, "You must be authenticated to write to the Hub (a token with write access)")
        return user

    def reload(self, repo_type: str, repo_id: str) -> Repo:
        """Read a repository again from its folder after a write, its LFS files served by the CDN."""
        folder = {t: f for f, t in REPO_TYPES.items()}[repo_type]
        with self._lock:
            repo = self.repos[(repo_type, repo_id)] = load_repo(repo_type, self.root / folder / repo_id)
            self.blobs.update({b.sha256: b for rev in [*repo.revisions.values(), *repo.commits.values()]
                               for b in rev.files.values() if b.lfs})
        return repo

    def staged(self, sha256: str) -> Path:
        """Where an uploaded LFS object waits for the commit that names it."""
        return self.root / UPLOADS_DIR / sha256

    def record(self, entry: dict) -> None:
        if self.log_path is None:
            return
        with self._lock, self.log_path.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    def user(self, headers) -> str | None:
        """The user of the request's token; an unknown token is an error, no token is anonymous."""
        auth = headers.get("Authorization", "")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if (repo_type, repo_id) in self.gone:
            raise HubError(404, "RepoNotFound", f"Repository Not Found for {repo_type} {repo_id}")
        if repo is None:
            raise HubError(401, "RepoNotFound", f"Repository {repo_type} {repo_id} not found")
        return repo

    def revision(self, repo: Repo, revision: str) -> Revision:
        found = repo.find(revision)
        if found is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return found

    def check_access(self, repo: Repo, user: str | None) -> None:
        if repo.gated and user is None:
            raise HubError(401, "GatedRepo",
                           f"Access to {repo.type} {repo.id} is restricted. You must have access to it "
                           "and be authenticated to access it. Please log in.")


def _split_revision(parts: list[str]) -> tuple[str, list[str]]:
    """(revision, rest) from path segments that start with a revision: one quoted segment, or an
    unquoted special ref (refs/convert/parquet, refs/pr/5) over three."""
    if len(parts) >= 3 and _SPECIAL_REF.match("/".join(parts[:3])):
        return "/".join(parts[:3]), parts[3:]
    if not parts:
        raise HubError(404, None, "missing revision")
    return unquote(parts[0]), parts[1:]


def _path_info(rev: Revision, path: str, expand: bool) -> dict:
    if path in rev.files:
        blob = rev.files[path]
        entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": 134}
    else:
        oid = hashlib.sha1(f"tree\0{rev.sha}\0{path}".encode()).hexdigest()
        entry = {"type": "directory", "oid": oid, "size": 0, "path": path}
    if expand:
        entry["lastCommit"] = {"id": rev.sha, "title": f"Upload {path}", "date": COMMIT_DATE}
    return entry


def _children(rev: Revision, path: str, recursive: bool) -> list[str]:
    prefix = f"{path}/" if path else ""
    names = [p for p in sorted(rev.dirs | set(rev.files)) if p.startswith(prefix)]
    return names if recursive else [p for p in names if "/" not in p[len(prefix):]]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bonito-repro-localhub"
    hub: Hub          # set on the subclass made per server
    is_cdn = False

    def log_message(self, format, *args):  # the request log replaces the console noise
        pass

    # ------------------------------------------------------------------ dispatch
    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def _read_body(self) -> bytes:
        """The request body, by its length or in chunks (an upload of a file object streams)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()  # the blank line after the last chunk
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]  # still quoted: %2F stays inside a segment
        query = parse_qs(url.query)
        # read a body first: an error answered before reading it would break keep-alive
        self.body = self._read_body()
        form = self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
        self.form = parse_qs(self.body.decode()) if form and self.body else {}
        self.endpoint = None
        try:
            self.endpoint, handler = self._route(parts)
            if handler is None:
                raise HubError(404, None, f"no such endpoint: {self.command} {url.path}")
            handler(query)
        except HubError as error:
            self._error(error)

    def _route(self, parts: list[str]):
        """(endpoint name, bound handler) for the request path, (None, None) if none matches."""
        method = self.command
        if self.is_cdn:
            if method in ("GET", "HEAD") and len(parts) == 2 and parts[0] == "blobs":
                return "cdn", lambda q: self._cdn(parts[1])
            if method == "PUT" and len(parts) == 2 and parts[0] == "upload":
                return "lfs_upload", lambda q: self._lfs_upload(parts[1])
            return None, None
        if parts[:1] == ["api"] and method == "POST":
            if parts[1:] == ["repos", "create"]:
                return "create_repo", self._create_repo
            if parts[1:] == ["validate-yaml"]:
                return "validate_yaml", self._validate_yaml
            if parts[1:3] == ["lfs", "verify"] and len(parts) == 4:
                return "lfs_verify", lambda q: self._lfs_verify(parts[3])
        if parts[:1] == ["api"]:
            if parts[1:] == ["whoami-v2"] and method == "GET":
                return "whoami", self._whoami
            if parts[1:] == ["agent-harnesses"] and method == "GET":
                return "agent_harnesses", lambda q: self._json({"standardEnvVars": [], "harnesses": {}})
            if len(parts) >= 4 and parts[1] in REPO_TYPES:
                repo_type, repo_id, rest = REPO_TYPES[parts[1]], f"{unquote(parts[2])}/{unquote(parts[3])}", parts[4:]
                if method == "GET" and not rest:
                    return "repo_info", lambda q: self._repo_info(repo_type, repo_id, "main", q)
                if method == "GET" and rest[:1] == ["revision"]:
                    revision, tail = _split_revision(rest[1:])
                    if not tail:
                        return "repo_info", lambda q: self._repo_info(repo_type, repo_id, revision, q)
                if method == "GET" and rest[:1] == ["tree"]:
                    revision, tail = _split_revision(rest[1:])
                    path = unquote("/".join(tail))
                    return "tree", lambda q: self._tree(repo_type, repo_id, revision, path, q)
                if method == "POST" and rest[:1] == ["paths-info"]:
                    revision, tail = _split_revision(rest[1:])
                    if not tail:
                        return "paths_info", lambda q: self._paths_info(repo_type, repo_id, revision)
                if method == "GET" and rest == ["refs"]:
                    return "refs", lambda q: self._refs(repo_type, repo_id, q)
                if method == "GET" and rest == ["auth-check"]:
                    return "auth_check", lambda q: self._auth_check(repo_type, repo_id)
                if method == "POST" and rest[:1] in (["preupload"], ["commit"]):
                    revision, tail = _split_revision(rest[1:])
                    if not tail and rest[0] == "preupload":
                        return "preupload", lambda q: self._preupload(repo_type, repo_id, revision)
                    if not tail:
                        return "commit", lambda q: self._commit(repo_type, repo_id, revision, q)
            return None, None
        repo_type = "dataset" if parts[:1] == ["datasets"] else "model"
        parts = parts[1:] if repo_type == "dataset" else parts
        if (method == "POST" and len(parts) == 6 and parts[1].endswith(".git")
                and parts[2:] == ["info", "lfs", "objects", "batch"]):
            repo_id = f"{unquote(parts[0])}/{unquote(parts[1]).removesuffix('.git')}"
            return "lfs_batch", lambda q: self._lfs_batch(repo_type, repo_id)
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            repo_id = f"{unquote(parts[0])}/{unquote(parts[1])}"
            revision, tail = _split_revision(parts[3:])
            path = unquote("/".join(tail))
            return "resolve", lambda q: self._resolve(repo_type, repo_id, revision, path)
        return None, None

    # ------------------------------------------------------------------ responses
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        # logged before answering, so a client that got its answer finds the request in the log
        entry = {"method": self.command, "path": urlsplit(self.path).path, "endpoint": self.endpoint,
                 "status": int(status)}
        if headers and "X-Error-Code" in headers:  # which refusal: RevisionNotFound, GatedRepo, ...
            entry["error"] = headers["X-Error-Code"]
        if status == 206:  # which bytes of which size: "bytes START-END/SIZE"
            entry["range"] = headers["Content-Range"]
        self.hub.record(entry)
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, headers: dict | None = None) -> None:
        return self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, error: HubError) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        if error.commit:
            headers["X-Repo-Commit"] = error.commit
        self._send(error.status, json.dumps({"error": error.message, **error.body}).encode(), headers)

    # ------------------------------------------------------------------ endpoints
    def _whoami(self, query) -> None:
        user = self.hub.user(self.headers)
        if user is None:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return self._json({"type": "user", "id": user, "name": user, "fullname": user, "orgs": [],
                           "auth": {"type": "access_token",
                                    "accessToken": {"displayName": "localhub", "role": "read"}}})

    def _repo_info(self, repo_type: str, repo_id: str, revision: str, query) -> None:
        self.hub.user(self.headers)
        repo = self.hub.repo(repo_type, repo_id)
        rev = self.hub.revision(repo, revision)
        blobs = query.get("blobs", [""])[0].lower() == "true"
        siblings = []
        for path, blob in rev.files.items():
            sibling = {"rfilename": path}
            if blobs:
                sibling.update(size=blob.size, blobId=blob.oid)
                if blob.lfs:
                    sibling["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": 134}
            siblings.append(sibling)
        info = {"_id": rev.sha[:24], "id": repo_id, "author": repo_id.split("/")[0], "sha": rev.sha,
                "lastModified": COMMIT_DATE, "createdAt": COMMIT_DATE, "private": False,
                "gated": repo.gated, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": siblings}
        if repo_type == "model":
            info["modelId"] = repo_id
        return self._json(info)

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str, query) -> None:
        self.hub.user(self.headers)
        repo = self.hub.repo(repo_type, repo_id)
        rev = self.hub.revision(repo, revision)
        path = path.strip("/")
        if path and path not in rev.dirs:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision}", rev.sha)
        recursive = query.get("recursive", [""])[0].lower() == "true"
        expand = query.get("expand", [""])[0].lower() == "true"
        return self._json([_path_info(rev, p, expand) for p in _children(rev, path, recursive)])

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        self.hub.user(self.headers)
        form = self.form
        repo = self.hub.repo(repo_type, repo_id)
        rev = self.hub.revision(repo, revision)
        expand = form.get("expand", [""])[0].lower() == "true"
        paths = [p.strip("/") for p in form.get("paths", [])]
        return self._json([_path_info(rev, p, expand) for p in paths if p in rev.files or p in rev.dirs])

    def _refs(self, repo_type: str, repo_id: str, query) -> None:
        self.hub.user(self.headers)
        repo = self.hub.repo(repo_type, repo_id)
        kinds: dict[str, list] = {"branches": [], "converts": [], "tags": [], "pullRequests": []}
        for name, rev in repo.revisions.items():
            kind, short = "branches", name
            if name.startswith("refs/convert/"):
                kind, short = "converts", name.removeprefix("refs/convert/")
            elif name.startswith("refs/pr/"):
                kind, short = "pullRequests", name.removeprefix("refs/pr/")
            ref = name if name.startswith("refs/") else f"refs/heads/{name}"
            kinds[kind].append({"name": short, "ref": ref, "targetCommit": rev.sha})
        if not query.get("include_prs"):
            del kinds["pullRequests"]
        return self._json(kinds)

    def _auth_check(self, repo_type: str, repo_id: str) -> None:
        user = self.hub.user(self.headers)
        self.hub.check_access(self.hub.repo(repo_type, repo_id), user)
        return self._json({})

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        user = self.hub.user(self.headers)
        repo = self.hub.repo(repo_type, repo_id)
        rev = self.hub.revision(repo, revision)
        self.hub.check_access(repo, user)
        blob = rev.files.get(path)
        if blob is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision}", rev.sha)
        common = {"X-Repo-Commit": rev.sha, "Accept-Ranges": "bytes"}
        if blob.lfs:
            location = f"{self.hub.cdn_base}/blobs/{blob.sha256}"
            headers = {**common, "Location": location, "X-Linked-Etag": f'"{blob.sha256}"',
                       "X-Linked-Size": str(blob.size), "ETag": f'"{blob.oid}"'}
            return self._send(302, b"", headers)
        return self._file(blob, {**common, "ETag": f'"{blob.oid}"'})

    def _cdn(self, sha256: str) -> None:
        blob = self.hub.blobs.get(sha256)
        if blob is None:
            raise HubError(404, None, "no such blob")
        return self._file(blob, {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"})

    def _file(self, blob: Blob, headers: dict) -> None:
        data = blob.path.read_bytes()
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and (match[1] or match[2]):
            if match[1]:
                start, end = int(match[1]), int(match[2]) if match[2] else blob.size - 1
            else:  # a suffix range: the last N bytes
                start, end = max(blob.size - int(match[2]), 0), blob.size - 1
            end = min(end, blob.size - 1)
            if start >= blob.size:
                return self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"",
                                  {"Content-Range": f"bytes */{blob.size}"})
            return self._send(206, data[start:end + 1],
                              {**headers, "Content-Range": f"bytes {start}-{end}/{blob.size}"})
        return self._send(200, data, headers)


    # ------------------------------------------------------------------ uploads (HfApi.upload_folder)
    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self._base()}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"

    def _payload(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise HubError(400, None, "the body is not JSON") from None

    def _create_repo(self, query) -> None:
        user = self.hub.write_user(self.headers)
        payload = self._payload()
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES.values():
            raise HubError(400, None, f"repository type {repo_type!r} is not served here")
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        if (repo_type, repo_id) in self.hub.repos:  # the Hub's answer names the repository's URL too
            raise HubError(409, None, f"You already created this {repo_type} repo: {repo_id}",
                           body={"url": self._repo_url(repo_type, repo_id)})
        folder = {t: f for f, t in REPO_TYPES.items()}[repo_type]
        main = self.hub.root / folder / repo_id / "main"
        main.mkdir(parents=True)
        # as on the Hub, a new repository's first commit holds the .gitattributes sending files to LFS
        (main / ".gitattributes").write_text("".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n"
                                                     for suffix in sorted(LFS_SUFFIXES)))
        self.hub.reload(repo_type, repo_id)
        url = self._repo_url(repo_type, repo_id)
        return self._json({"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, query) -> None:
        self.hub.user(self.headers)
        errors = metadata_errors(self._payload().get("content", ""))
        body = {"errors": [{"message": e} for e in errors], "warnings": []}
        if errors:
            return self._send(400, json.dumps(body).encode(), {"Content-Type": "application/json",
                                                               "X-Error-Message": errors[0]})
        return self._json(body)

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        self.hub.write_user(self.headers)
        rev = self.hub.revision(self.hub.repo(repo_type, repo_id), revision)
        files = []
        for file in self._payload().get("files", []):
            lfs = Path(file["path"]).suffix in LFS_SUFFIXES
            blob = rev.files.get(file["path"])
            files.append({"path": file["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": None if blob is None else blob.sha256 if lfs else blob.oid})
        return self._json({"files": files, "commitOid": rev.sha})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self.hub.write_user(self.headers)
        self.hub.repo(repo_type, repo_id)
        payload = self._payload()
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, None, "only uploads by the basic transfer are served here")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.hub.blobs and not self.hub.staged(oid).exists():
                entry["actions"] = {"upload": {"href": f"{self.hub.cdn_base}/upload/{oid}", "header": {}},
                                    "verify": {"href": f"{self._base()}/api/lfs/verify/{oid}", "header": {}}}
            objects.append(entry)
        body = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        return self._send(200, body, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_upload(self, sha256: str) -> None:
        if hashlib.sha256(self.body).hexdigest() != sha256:
            raise HubError(400, None, f"the uploaded bytes do not hash to {sha256}")
        target = self.hub.staged(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(self.body)
        partial.replace(target)
        return self._send(200)

    def _lfs_verify(self, sha256: str) -> None:
        self.hub.write_user(self.headers)
        payload = self._payload()
        target = self.hub.staged(sha256)
        if payload.get("oid") != sha256 or not target.exists() or target.stat().st_size != int(payload.get("size", -1)):
            raise HubError(404, None, f"object {sha256} of size {payload.get('size')} was not uploaded")
        return self._json({})

    def _commit(self, repo_type: str, repo_id: str, revision: str, query) -> None:
        self.hub.write_user(self.headers)
        repo = self.hub.repo(repo_type, repo_id)
        self.hub.revision(repo, revision)
        if query.get("create_pr"):
            raise HubError(400, None, "pull requests are not served here")
        files: dict[str, bytes | Path | None] = {}
        for line in self.body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":  # the commit message: not kept (the local Hub lists no history)
                continue
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                known = self.hub.blobs.get(value["oid"])
                stored = known.path if known else self.hub.staged(value["oid"])
                if not stored.exists():
                    raise HubError(422, None, f"{value['path']}: LFS object {value['oid']} was never uploaded")
                files[value["path"]] = stored
            elif key == "deletedFile":
                files[value["path"]] = None
            else:
                raise HubError(400, None, f"commit operation {key!r} is not served here")
        _, sha = move_branch(self.hub.root, repo_type, repo_id, revision, files)
        self.hub.reload(repo_type, repo_id)
        return self._json({"success": True, "commitOid": sha, "pullRequestUrl": None,
                           "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{sha}"})


@dataclass
class Server:
    """A running local Hub: the Hub origin and the CDN origin, each on its own port."""

    hub: Hub
    hub_http: ThreadingHTTPServer
    cdn_http: ThreadingHTTPServer

    @property
    def endpoint(self) -> str:
        host, port = self.hub_http.server_address[:2]
        return f"http://{host}:{port}"

    def serve_in_threads(self) -> None:
        for http in (self.hub_http, self.cdn_http):
            threading.Thread(target=http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        for http in (self.hub_http, self.cdn_http):
            http.shutdown()
            http.server_close()


def make_server(root: str | Path, port: int = 0, log_path: str | Path | None = None) -> Server:
    """Bind the Hub (``port``, 0: any free port) and its CDN (any free port) on 127.0.0.1."""
    hub = Hub(Path(root), Path(log_path) if log_path else None)
    servers = []
    for is_cdn, bind_port in ((False, port), (True, 0)):
        handler = type("BoundHandler", (Handler,), {"hub": hub, "is_cdn": is_cdn})
        http = ThreadingHTTPServer(("127.0.0.1", bind_port), handler)
        http.daemon_threads = True
        servers.append(http)
    hub.cdn_base = "http://127.0.0.1:%d" % servers[1].server_address[1]
    return Server(hub, *servers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bonito_repro.localhub serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the folder of repositories (see `build`)")
    parser.add_argument("--port", type=int, default=0, help="Hub port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--log", type=Path, help="append every request as a JSON line here")
    parser.add_argument("--endpoint-file", type=Path, help="write the endpoint URL here once serving")
    args = parser.parse_args(argv)
    server = make_server(args.root, args.port, args.log)
    server.serve_in_threads()
    if args.endpoint_file:
        tmp = args.endpoint_file.with_name(args.endpoint_file.name + ".tmp")
        tmp.write_text(server.endpoint + "\n")
        tmp.replace(args.endpoint_file)
    repos = len(server.hub.repos)
    print(f"local Hub: {repos} repositories from {args.root} at {server.endpoint} "
          f"(export HF_ENDPOINT={server.endpoint})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
