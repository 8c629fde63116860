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
    input:
        lambda w: local_files("unannotated", data_origin(w.dataset, "unannotated")),
    output:
        rows=f"{R}/unannotated/{{dataset}}.parquet",
        manifest=f"{R}/unannotated/{{dataset}}.manifest.json",
    params:
        origin=lambda w: as_json(data_origin(w.dataset, "unannotated")),
        online=lambda w: data_online(w.dataset, "unannotated"),
    log:
        f"{R}/logs/unannotated/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/unannotated/{{dataset}}.tsv"
    threads: threads_of("default")
    resources: **resources_of("default")
    conda:
        "../envs/main.yaml"
    shell:
        f"{{params.online}} {MAIN_PY} -m bonito_repro target-data unannotated --dataset {{wildcards.dataset}}"
        " --origin {params.origin:q} --out {output.rows} --manifest {output.manifest} > {log} 2>&1"


rule test_set:
    input:
        lambda w: local_files("test", data_origin(w.dataset, "test")),
    output:
        rows=f"{R}/test/{{dataset}}.parquet",
        manifest=f"{R}/test/{{dataset}}.manifest.json",
    wildcard_constraints:
        dataset=_choice(EVALUATED),
    params:
        origin=lambda w: as_json(data_origin(w.dataset, "test")),
        fields=lambda w: as_json(config["datasets"][w.dataset]["test_fields"]),
        labels=lambda w: as_json(config["datasets"][w.dataset].get("labels")),
        online=lambda w: data_online(w.dataset, "test"),
    log:
        f"{R}/logs/test/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/test/{{dataset}}.tsv"
    threads: threads_of("default")
    resources: **resources_of("default")
    conda:
        "../envs/main.yaml"
    shell:
        f"{{params.online}} {MAIN_PY} -m bonito_repro target-data test --dataset {{wildcards.dataset}}"
        " --origin {params.origin:q} --fields {params.fields:q} --labels {params.labels:q}"
        " --out {output.rows} --manifest {output.manifest} > {log} 2>&1"
