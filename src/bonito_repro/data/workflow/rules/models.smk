# Base models: download (hub), convert (gguf) or build (tiny) once; every other job reads the
# directory offline. A local rule, like the data downloads: on a cluster it runs on the login
# node, which has the network that compute nodes often lack.

localrules:
    prepare_model,


rule prepare_model:
    output:
        model=directory(layout.model_dir("{model}")),
        manifest=layout.model_dir("{model}", ".manifest.json"),
    params:
        spec=lambda w: as_json(dag.model_spec(w.model)),
        online=ONLINE,
    log: layout.log("models/{model}"),
    benchmark: layout.benchmark("models/{model}")
    threads: dag.threads("download_model")
    resources: **dag.resources("download_model")
    conda: MAIN_ENV
    shell:
        f"{{params.online}} {MAIN_PY} -m bonito_repro models --name {{wildcards.model}} --spec {{params.spec:q}}"
        " --out {output.model} --manifest {output.manifest} > {log} 2>&1"
