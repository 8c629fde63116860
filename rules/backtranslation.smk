# Instruction backtranslation (`python -m bonito_repro backtranslation`), generators of kind
# `backtranslation` (docs/protocol.md, section 6.1, D16):
# - backtranslation_seed: the first exchange of each seed conversation, in both directions
#   (local: it downloads, as the data rules do);
# - train_backtranslation: the backward (response -> instruction) and forward (M0) adapters of the
#   generator's base, by the training stage with backtranslation_training's values;
# - backtranslate: the backward model writes an instruction for each passage, M0 rates each pair,
#   and the funnel keeps those at or above the threshold; same outputs as generate (generate.smk),
#   finished shards under results/shards/ for a rerun of a killed job.

BACKTRANSLATION_GENERATORS = sorted(g for g, s in config["generators"].items() if s["kind"] == "backtranslation")
SEED = f"{R}/generators/{{generator}}/seed"
BACKTRANSLATION_ADAPTER = f"{R}/generators/{{generator}}/{{direction}}_adapter"


if BACKTRANSLATION_GENERATORS:

    localrules:
        backtranslation_seed,

    rule backtranslation_seed:
        input:
            lambda w: local_files("seed", config["generators"][w.generator]["seed"]),
        output:
            backward=f"{SEED}/backward.parquet",
            forward=f"{SEED}/forward.parquet",
            manifest=f"{SEED}/manifest.json",
        wildcard_constraints:
            generator=_choice(BACKTRANSLATION_GENERATORS),
        params:
            origin=lambda w: as_json(config["generators"][w.generator]["seed"]),
            online=lambda w: ONLINE if "hub" in config["generators"][w.generator]["seed"] else "",
        log:
            f"{R}/logs/backtranslation_seed/{{generator}}.log",
        conda:
            "../envs/main.yaml"
        shell:
            f"{{params.online}} {MAIN_PY} -m bonito_repro backtranslation seed --origin {{params.origin:q}}"
            " --backward {output.backward} --forward {output.forward} --manifest {output.manifest} > {log} 2>&1"

    rule train_backtranslation:
        input:
            base=model_at("generators/{generator}/base"),
            train=f"{SEED}/{{direction}}.parquet",
        output:
            adapter=directory(BACKTRANSLATION_ADAPTER),
            manifest=f"{BACKTRANSLATION_ADAPTER}.manifest.json",
        wildcard_constraints:
            generator=_choice(BACKTRANSLATION_GENERATORS),
            direction="backward|forward",
        params:
            hp=as_json(config["backtranslation_training"]),
            train=train_command("backtranslation_training"),
            wrapper=BACKTRANSLATION_WRAPPER,
            checkpoints=lambda w: f"{CHECKPOINTS}/generators/{w.generator}/{w.direction}_adapter",
            device=config["device"],
        log:
            f"{R}/logs/train_backtranslation/{{generator}}/{{direction}}.log",
        benchmark:
            f"{R}/benchmarks/train_backtranslation/{{generator}}/{{direction}}.tsv"
        priority: 2  # the head of its generator's chain, as train_bonito
        threads: threads_of("adapt")
        resources: **resources_of("adapt")
        conda:
            "../envs/main.yaml"
        shell:
            f"{MAIN_PY} {{params.train}} --mode pairs --wrapper {{params.wrapper}} --base {{input.base}}"
            " --data {input.train} --out {output.adapter} --checkpoints {params.checkpoints}"
            " --manifest {output.manifest} --params {params.hp:q} --threads {threads} --device {params.device}"
            " --name backtranslation/{wildcards.generator}/{wildcards.direction} > {log} 2>&1"

    rule backtranslate:
        input:
            model=model_at("generators/{generator}/base"),
            backward=f"{R}/generators/{{generator}}/backward_adapter",
            forward=f"{R}/generators/{{generator}}/forward_adapter",
            passages=f"{R}/unannotated/{{dataset}}.parquet",
            test=lambda w: test_split(w.dataset),
        output:
            **SYNTHETIC_OUTPUTS,
        wildcard_constraints:
            generator=_choice(BACKTRANSLATION_GENERATORS),
        params:
            hp=as_json(config["generation"]),
            test=test_arg,
            device=config["device"],
            curation=lambda w: as_json({k: config["generators"][w.generator][k]
                                        for k in ("threshold", "rating_max_new_tokens")}),
            task_type=lambda w: config["datasets"][w.dataset]["task_type"],
            shards=lambda w: f"{SHARDS}/{w.generator}/{w.dataset}",
        log:
            f"{R}/logs/generate/{{generator}}/{{dataset}}.log",
        benchmark:
            f"{R}/benchmarks/generate/{{generator}}/{{dataset}}.tsv"
        priority: 1
        threads: threads_of("generate")
        resources: **resources_of("generate")
        conda:
            GENERATION_ENV
        shell:
            f"{GENERATION_PY} -m bonito_repro backtranslation generate --dataset {{wildcards.dataset}}"
            " --task-type {params.task_type:q} --passages {input.passages} {params.test}"
            " --model {input.model} --backward-adapter {input.backward} --forward-adapter {input.forward}"
            " --params {params.hp:q} --curation {params.curation:q} --shards {params.shards}"
            " --out {output.rows} --manifest {output.manifest} --records {output.records}"
            " --formats {output.formats} --threads {threads} --device {params.device} > {log} 2>&1"
