# Training on ctga-v1 (`python -m bonito_repro train`, the engine adapt.smk uses too):
# - train_bonito: the Bonito generator, Q-LoRA of a generator's `base` on ctga-v1 (generators
#   with `model:` instead are used as they are and have no rule here);
# - train_p3: the P3-style adapter standing in for BatsResearch/*-P3 (targets with
#   init_adapter: {train_on: p3}), trained on ctga's p3 rows;
# - parse_check (`python -m bonito_repro parse-check`): how many of the first validation contexts
#   the trained generator's greedy output parses on, against its untrained base; a job of its own
#   (inference only), so that changing the check never reruns the training.
# Their loss curves are drawn from the manifests by loss_curve (plots.smk). A rerun of a killed
# job continues from its latest complete checkpoint (CHECKPOINTS, common.smk). train_bonito runs
# longer than a job may (resources.max_runtime): each attempt ends at its time limit and the next,
# one of the retries the cost model projects, resumes from the last checkpoint.
from bonito_repro.cluster.cost import bonito_retries

TRAINED_GENERATORS = sorted(g for g, spec in config["generators"].items() if spec["kind"] == "bonito" and "base" in spec)
PARSE_CHECKS = [f"{R}/generators/{g}/parse_check.json" for g in TRAINED_GENERATORS if g in SOURCES]
P3_MODELS = sorted({config["targets"][t]["model"] for t in TARGETS
                    if config["targets"][t].get("init_adapter", {}).get("train_on") == "p3"})


rule train_bonito:
    input:
        base=model_at("generators/{generator}/base"),
        train=f"{R}/ctga/train.parquet",
        validation=f"{R}/ctga/validation.parquet",
    output:
        adapter=directory(f"{R}/generators/{{generator}}/adapter"),
        manifest=f"{R}/generators/{{generator}}/adapter.manifest.json",
    wildcard_constraints:
        generator=_choice(TRAINED_GENERATORS),
    params:
        hp=as_json(config["bonito_training"]),
        train=train_command("bonito_training"),
        device=config["device"],
        checkpoints=lambda w: f"{CHECKPOINTS}/generators/{w.generator}/adapter",
    log:
        f"{R}/logs/train_bonito/{{generator}}.log",
    benchmark:
        f"{R}/benchmarks/train_bonito/{{generator}}.tsv"
    priority: 2  # the head of the longest chain (generate, adapt, evaluate): start it first
    retries: bonito_retries(config)
    threads: threads_of("train_bonito")
    resources: **resources_of("train_bonito")
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} {{params.train}} --mode pairs --wrapper none --base {{input.base}} --data {{input.train}}"
        " --validation {input.validation} --out {output.adapter} --checkpoints {params.checkpoints}"
        " --manifest {output.manifest} --params {params.hp:q} --threads {threads} --device {params.device}"
        " --name generator/{wildcards.generator} > {log} 2>&1"


rule parse_check:
    input:
        base=model_at("generators/{generator}/base"),
        adapter=f"{R}/generators/{{generator}}/adapter",
        validation=f"{R}/ctga/validation.parquet",
    output:
        f"{R}/generators/{{generator}}/parse_check.json",
    wildcard_constraints:
        generator=_choice(TRAINED_GENERATORS),
    params:
        # the base loads as the training loaded it
        hp=as_json({**config["parse_check"], "bf16": config["bonito_training"]["bf16"]}),
        device=config["device"],
    log:
        f"{R}/logs/parse_check/{{generator}}.log",
    benchmark:
        f"{R}/benchmarks/parse_check/{{generator}}.tsv"
    threads: threads_of("generate")  # inference with the generator, as generation runs it
    resources: **resources_of("generate")
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro parse-check --base {{input.base}} --adapter {{input.adapter}}"
        " --validation {input.validation} --params {params.hp:q} --out {output}"
        " --threads {threads} --device {params.device} > {log} 2>&1"


if P3_MODELS:

    rule train_p3:
        input:
            base=model_dir("{model}"),
            train=f"{R}/ctga/p3.parquet",
        output:
            adapter=directory(f"{R}/p3/{{model}}/adapter"),
            manifest=f"{R}/p3/{{model}}/adapter.manifest.json",
        wildcard_constraints:
            model=_choice(P3_MODELS),
        params:
            hp=as_json(config["p3_training"]),
            train=train_command("p3_training"),
            device=config["device"],
            checkpoints=lambda w: f"{CHECKPOINTS}/p3/{w.model}/adapter",
        log:
            f"{R}/logs/train_p3/{{model}}.log",
        benchmark:
            f"{R}/benchmarks/train_p3/{{model}}.tsv"
        threads: threads_of("adapt")
        resources: **resources_of("adapt")
        conda:
            "../envs/main.yaml"
        shell:
            f"{MAIN_PY} {{params.train}} --mode pairs --wrapper io --base {{input.base}} --data {{input.train}}"
            " --out {output.adapter} --checkpoints {params.checkpoints} --manifest {output.manifest}"
            " --params {params.hp:q} --threads {threads} --device {params.device}"
            " --name p3/{wildcards.model} > {log} 2>&1"
