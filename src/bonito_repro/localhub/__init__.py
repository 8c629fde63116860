"""A local, Hub-compatible server and the repositories it serves, for testing and rehearsing the
paper-scale loaders with no network (``python -m bonito_repro.localhub --help``).

- ``build``: write the repositories of ``data/local_hub.yaml`` (laid out as the real ones are)
- ``server``: serve such a folder over HTTP as the Hub does (the endpoints are listed there)
"""
