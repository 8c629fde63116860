"""`python -m bonito_repro.localhub {build,serve,rehearse}`: write the local Hub's repositories, serve
a folder of them on 127.0.0.1 (then `export HF_ENDPOINT=<the printed URL>`; `HF_TOKEN` set to a token
of its tokens.json opens the gated repositories), or run the rehearsal against them (rehearsal.py)."""
from __future__ import annotations

import argparse
import sys

from . import build, rehearsal, server


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        return server.main(argv[1:])
    if argv[:1] == ["rehearse"]:
        return rehearsal.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bonito_repro.localhub", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="write the repositories of data/local_hub.yaml")
    make.add_argument("root", help="output folder (replaced)")
    make.add_argument("--spec", default=str(build.SPEC_PATH), help="the repositories (YAML)")
    commands.add_parser("serve", help="serve a folder of repositories (see serve --help)")
    commands.add_parser("rehearse", help="run the rehearsal against them (see rehearse --help)")
    args = parser.parse_args(argv)
    root = build.build(args.root, args.spec)
    print(f"local Hub repositories written to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
