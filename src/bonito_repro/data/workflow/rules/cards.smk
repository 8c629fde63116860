# Hugging Face cards (`python -m bonito_repro cards`), written from the manifests by small local
# jobs into folders that can be pushed to the Hub as they are: a dataset card beside each
# synthetic set (`synthetic/{generator}/{dataset}.hub/`, with the tasks and bagel's formats), a
# model card beside each adapter (`adapters/{target}/{source}/{dataset}.hub/`, with its files and
# F1). A card's text changes rerun only the card jobs.

localrules:
    dataset_card,
    model_card,


rule dataset_card:
    input:
        tasks=layout.synthetic("{generator}", "{dataset}"),
        manifest=layout.synthetic("{generator}", "{dataset}", ".manifest.json"),
        formats=layout.synthetic("{generator}", "{dataset}", ".formats"),
        passages=layout.unannotated("{dataset}", ".manifest.json"),
    output: directory(layout.synthetic("{generator}", "{dataset}", ".hub"))
    params:
        info=lambda w: as_json(dag.dataset_card_info(w.generator, w.dataset)),
    log: layout.log("dataset_card/{generator}/{dataset}")
    benchmark: layout.benchmark("dataset_card/{generator}/{dataset}")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro cards dataset --tasks {{input.tasks}} --manifest {{input.manifest}}"
        " --formats {input.formats} --passages-manifest {input.passages} --info {params.info:q}"
        " --out {output} > {log} 2>&1"


rule model_card:
    input:
        adapter=layout.adapter("{target}", "{source}", "{dataset}"),
        manifest=layout.adapter("{target}", "{source}", "{dataset}", ".manifest.json"),
        evaluation=lambda w: layout.evaluation(w.target, w.source, w.dataset) if w.dataset in dag.evaluated else [],
        data=lambda w: dag.training_rows(w.source, w.dataset).replace(".parquet", ".manifest.json"),
    output: directory(layout.adapter("{target}", "{source}", "{dataset}", ".hub"))
    params:
        info=lambda w: as_json(dag.model_card_info(w.target, w.source, w.dataset)),
        evaluation=lambda w, input: f"--evaluation {input.evaluation}" if input.evaluation else "",
    log: layout.log("model_card/{target}/{source}/{dataset}")
    benchmark: layout.benchmark("model_card/{target}/{source}/{dataset}")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro cards model --adapter {{input.adapter}} --manifest {{input.manifest}}"
        " {params.evaluation} --data-manifest {input.data} --info {params.info:q}"
        " --out {output} > {log} 2>&1"
