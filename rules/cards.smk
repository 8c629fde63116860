# Hugging Face cards (`python -m bonito_repro cards`), written from the manifests by small local
# jobs into folders that can be pushed to the Hub as they are: a dataset card beside each
# synthetic set (`synthetic/{generator}/{dataset}.hub/`, with the tasks and bagel's formats), a
# model card beside each adapter (`adapters/{target}/{source}/{dataset}.hub/`, with its files and
# F1). A card's text changes rerun only the card jobs.

localrules:
    dataset_card,
    model_card,

CARDS = [
    *(synthetic(g, d, ".hub") for g in SOURCES if g != TAPT for d in DATASETS),  # the sets the run adapts on
    *(adapter_dir(t, s, d) + ".hub" for t in TARGETS for s in SOURCES for d in DATASETS),
]


rule dataset_card:
    input:
        tasks=synthetic("{generator}", "{dataset}"),
        manifest=synthetic("{generator}", "{dataset}", ".manifest.json"),
        formats=synthetic("{generator}", "{dataset}", ".formats"),
        passages=f"{R}/unannotated/{{dataset}}.manifest.json",
    output:
        directory(synthetic("{generator}", "{dataset}", ".hub")),
    params:
        info=lambda w: as_json(dataset_card_info(w.generator, w.dataset)),
    log:
        f"{R}/logs/dataset_card/{{generator}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/dataset_card/{{generator}}/{{dataset}}.tsv"
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro cards dataset --tasks {{input.tasks}} --manifest {{input.manifest}}"
        " --formats {input.formats} --passages-manifest {input.passages} --info {params.info:q}"
        " --out {output} > {log} 2>&1"


rule model_card:
    input:
        adapter=adapter_dir("{target}", "{source}", "{dataset}"),
        manifest=adapter_dir("{target}", "{source}", "{dataset}") + ".manifest.json",
        evaluation=lambda w: f"{R}/eval/{w.target}/{w.source}/{w.dataset}.json" if w.dataset in EVALUATED else [],
        data=lambda w: training_rows(w.source, w.dataset).replace(".parquet", ".manifest.json"),
    output:
        directory(adapter_dir("{target}", "{source}", "{dataset}") + ".hub"),
    params:
        info=lambda w: as_json(model_card_info(w.target, w.source, w.dataset)),
        evaluation=lambda w, input: f"--evaluation {input.evaluation}" if input.evaluation else "",
    log:
        f"{R}/logs/model_card/{{target}}/{{source}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/model_card/{{target}}/{{source}}/{{dataset}}.tsv"
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro cards model --adapter {{input.adapter}} --manifest {{input.manifest}}"
        " {params.evaluation} --data-manifest {input.data} --info {params.info:q}"
        " --out {output} > {log} 2>&1"
