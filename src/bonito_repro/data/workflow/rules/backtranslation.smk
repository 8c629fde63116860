# Instruction backtranslation (`python -m bonito_repro backtranslation`), generators of kind
# `backtranslation` (docs/protocol.md, section 6.1, D18):
# - backtranslation_seed: the seed pairs (the first turn of the oasst1 conversations that
#   `seed_selection` chooses), in both directions (local: it downloads, as the data rules do);
# - train_backtranslation: the backward (response -> instruction) and forward (M0) adapters of the
#   generator's base, by the training stage with backtranslation_training's values;
# - backtranslate: the backward model writes an instruction for each passage, M0 rates each pair,
#   and the funnel keeps those at or above the threshold; same outputs as generate (generate.smk),
#   finished shards under results/shards/ for a rerun of a killed job.

localrules:
    backtranslation_seed,


rule backtranslation_seed:
    input: lambda w: local_files(config["generators"][w.generator]["seed"], "seed")
    output:
        **{name: layout.generator("{generator}", "seed", f"{name}.parquet") for name in ("backward", "forward")},
        manifest=layout.generator("{generator}", "seed", "manifest.json"),
    wildcard_constraints: generator=choice(dag.generators_of(training_rule="train_backtranslation"))
    params:
        origin=lambda w: as_json(dag.seed_origin(w.generator)),
        selection=lambda w: as_json(config["generators"][w.generator]["seed_selection"]),
        online=lambda w: online(config["generators"][w.generator]["seed"]),
    log: layout.log("backtranslation_seed/{generator}")
    benchmark: layout.benchmark("backtranslation_seed/{generator}")
    conda: MAIN_ENV
    shell:
        f"{{params.online}} {MAIN_PY} -m bonito_repro backtranslation seed --origin {{params.origin:q}}"
        " --selection {params.selection:q} --backward {output.backward} --forward {output.forward}"
        " --manifest {output.manifest} > {log} 2>&1"


DIRECTION_ADAPTER = layout.generator("{generator}", "{direction}_adapter")


rule train_backtranslation:
    input:
        base=dag.model_of("generators", "base"), train=layout.generator("{generator}", "seed", "{direction}.parquet"),
    output: adapter=directory(DIRECTION_ADAPTER), manifest=f"{DIRECTION_ADAPTER}.manifest.json"
    wildcard_constraints: generator=choice(dag.generators_of(training_rule="train_backtranslation")), direction="backward|forward"
    params: **dag.training_params("backtranslation_training", DIRECTION_ADAPTER), wrapper=BACKTRANSLATION_WRAPPER
    log: layout.log("train_backtranslation/{generator}/{direction}")
    benchmark: layout.benchmark("train_backtranslation/{generator}/{direction}")
    priority: 2  # the head of its generator's chain, as train_bonito
    threads: dag.threads("adapt")
    resources: **dag.resources("adapt")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} {{params.train}} --mode pairs --wrapper {{params.wrapper}} --base {{input.base}}"
        " --data {input.train} --out {output.adapter} --checkpoints {params.checkpoints}"
        " --manifest {output.manifest} --params {params.hp:q} --threads {threads} --device {params.device}"
        " --name backtranslation/{wildcards.generator}/{wildcards.direction} > {log} 2>&1"


rule backtranslate:
    input:
        model=dag.model_of("generators", "base"), backward=layout.generator("{generator}", "backward_adapter"),
        forward=layout.generator("{generator}", "forward_adapter"), passages=layout.unannotated("{dataset}"),
        test=lambda w: dag.test_input(w.dataset),
    output: **synthetic_outputs()
    wildcard_constraints: generator=choice(dag.generators_of(rule="backtranslate"))
    params: **dag.backtranslate_params()
    log: layout.log("generate/{generator}/{dataset}")
    benchmark: layout.benchmark("generate/{generator}/{dataset}")
    priority: 1
    threads: dag.threads("generate")
    resources: **dag.resources("generate")
    conda: GENERATION_ENV
    shell:
        f"{GENERATION_PY} -m bonito_repro backtranslation generate --dataset {{wildcards.dataset}}"
        " --task-type {params.task_type:q} --passages {input.passages} {params.test}"
        " --model {input.model} --backward-adapter {input.backward} --forward-adapter {input.forward}"
        " --params {params.hp:q} --curation {params.curation:q} --shards {params.shards}"
        " --out {output.rows} --manifest {output.manifest} --records {output.records}"
        " --formats {output.formats} --threads {threads} --device {params.device} > {log} 2>&1"
