# Target data: each dataset's unannotated passages and its labelled test split, read from their
# origin in config (Hub, embedded demo data, or the user's files) and checked against the
# fields its dataset file gives (bonito_repro.core.schemas).
#
# Both rules are local: they take seconds and little memory, and at paper scale they are the
# jobs that download the datasets, which needs the network a cluster's login node has and its
# compute nodes often lack. Later jobs read the parquet files offline.

localrules:
    unannotated,
    test_set,


rule unannotated:
    input: lambda w: local_files(dag.data_origin(w.dataset, "unannotated"), "unannotated")
    output:
        rows=layout.unannotated("{dataset}"),
        manifest=layout.unannotated("{dataset}", ".manifest.json"),
    params:
        origin=lambda w: as_json(dag.data_origin(w.dataset, "unannotated")),
        online=lambda w: online(dag.data_origin(w.dataset, "unannotated")),
    log: layout.log("unannotated/{dataset}"),
    benchmark: layout.benchmark("unannotated/{dataset}")
    threads: dag.threads("default")
    resources: **dag.resources("default")
    conda: MAIN_ENV
    shell:
        f"{{params.online}} {MAIN_PY} -m bonito_repro target-data unannotated --dataset {{wildcards.dataset}}"
        " --origin {params.origin:q} --out {output.rows} --manifest {output.manifest} > {log} 2>&1"


rule test_set:
    input: lambda w: local_files(dag.data_origin(w.dataset, "test"), "test")
    output:
        rows=layout.test_split("{dataset}"),
        manifest=layout.test_split("{dataset}", ".manifest.json"),
    wildcard_constraints:
        dataset=choice(dag.evaluated),
    params:
        origin=lambda w: as_json(dag.data_origin(w.dataset, "test")),
        fields=lambda w: as_json(config["datasets"][w.dataset]["test_fields"]),
        labels=lambda w: as_json(config["datasets"][w.dataset].get("labels")),
        online=lambda w: online(dag.data_origin(w.dataset, "test")),
    log: layout.log("test/{dataset}"),
    benchmark: layout.benchmark("test/{dataset}")
    threads: dag.threads("default")
    resources: **dag.resources("default")
    conda: MAIN_ENV
    shell:
        f"{{params.online}} {MAIN_PY} -m bonito_repro target-data test --dataset {{wildcards.dataset}}"
        " --origin {params.origin:q} --fields {params.fields:q} --labels {params.labels:q}"
        " --out {output.rows} --manifest {output.manifest} > {log} 2>&1"
