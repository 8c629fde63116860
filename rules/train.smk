# Training, one engine for all (`python -m bonito_repro train`):
# - train_bonito: the Bonito generator, Q-LoRA of a generator's `base` on ctga-v1 (generators
#   with `model:` instead are used as they are and have no rule here);
# - train_p3: the P3-style adapter standing in for BatsResearch/*-P3 (targets with
#   init_adapter: {train_on: p3}), trained on ctga's p3 rows;
# - adapt: LoRA adaptation of each target on each (source, dataset): a generator's synthetic tasks
#   (loss on the response) or, for `tapt`, the unannotated passages (loss on every token);
# - parse_check (`python -m bonito_repro parse-check`): how many of the first validation contexts
#   the trained generator's greedy output parses on, against its untrained base; a job of its own
#   (inference only), so that changing the check never reruns the training.
# Their loss curves are drawn from the manifests by loss_curve (plots.smk).
# Resume checkpoints live under results/checkpoints/ (same relative path as the output), which is
# not a declared output: Snakemake deletes declared outputs before a retry. A rerun of a killed
# job continues from the latest complete checkpoint.

CHECKPOINTS = f"{R}/checkpoints"
TRAINED_GENERATORS = sorted(g for g, spec in config["generators"].items() if "base" in spec)
PARSE_CHECKS = [f"{R}/generators/{g}/parse_check.json" for g in TRAINED_GENERATORS if g in SOURCES]
P3_MODELS = sorted({config["targets"][t]["model"] for t in TARGETS
                    if config["targets"][t].get("init_adapter", {}).get("train_on") == "p3"})


rule train_bonito:
    input:
        base=lambda w: model_dir(config["generators"][w.generator]["base"]),
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
        checkpoints=lambda w: f"{CHECKPOINTS}/generators/{w.generator}/adapter",
    log:
        f"{R}/logs/train_bonito/{{generator}}.log",
    benchmark:
        f"{R}/benchmarks/train_bonito/{{generator}}.tsv"
    priority: 2  # the head of the longest chain (generate, adapt, evaluate): start it first
    threads: threads_of("train_bonito")
    resources: **resources_of("train_bonito")
    conda:
        "../envs/main.yaml"
    shell:
        "{params.train} --mode pairs --wrapper none --base {input.base} --data {input.train}"
        " --validation {input.validation} --out {output.adapter} --checkpoints {params.checkpoints}"
        " --manifest {output.manifest} --params {params.hp:q} --threads {threads}"
        " --name generator/{wildcards.generator} > {log} 2>&1"


rule parse_check:
    input:
        base=lambda w: model_dir(config["generators"][w.generator]["base"]),
        adapter=f"{R}/generators/{{generator}}/adapter",
        validation=f"{R}/ctga/validation.parquet",
    output:
        f"{R}/generators/{{generator}}/parse_check.json",
    wildcard_constraints:
        generator=_choice(TRAINED_GENERATORS),
    params:
        # the base loads as the training loaded it
        hp=as_json({**config["parse_check"], "bf16": config["bonito_training"]["bf16"]}),
    log:
        f"{R}/logs/parse_check/{{generator}}.log",
    benchmark:
        f"{R}/benchmarks/parse_check/{{generator}}.tsv"
    threads: threads_of("generate")  # inference with the generator, as generation runs it
    resources: **resources_of("generate")
    conda:
        "../envs/main.yaml"
    shell:
        "python -m bonito_repro parse-check --base {input.base} --adapter {input.adapter}"
        " --validation {input.validation} --params {params.hp:q} --out {output}"
        " --threads {threads} > {log} 2>&1"


if P3_MODELS:

    rule train_p3:
        input:
            base=lambda w: model_dir(w.model),
            train=f"{R}/ctga/p3.parquet",
        output:
            adapter=directory(f"{R}/p3/{{model}}/adapter"),
            manifest=f"{R}/p3/{{model}}/adapter.manifest.json",
        wildcard_constraints:
            model=_choice(P3_MODELS),
        params:
            hp=as_json(config["p3_training"]),
            train=train_command("p3_training"),
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
            "{params.train} --mode pairs --wrapper io --base {input.base} --data {input.train}"
            " --out {output.adapter} --checkpoints {params.checkpoints} --manifest {output.manifest}"
            " --params {params.hp:q} --threads {threads}"
            " --name p3/{wildcards.model} > {log} 2>&1"


rule adapt:
    input:
        base=lambda w: model_dir(config["targets"][w.target]["model"]),
        init_adapter=lambda w: init_adapter_dir(w.target) or [],
        rows=lambda w: training_rows(w.source, w.dataset),
    output:
        adapter=directory(adapter_dir("{target}", "{source}", "{dataset}")),
        manifest=adapter_dir("{target}", "{source}", "{dataset}") + ".manifest.json",
    wildcard_constraints:
        source=_choice([TAPT, *GENERATORS]),
    params:
        hp=lambda w: as_json(adaptation_params(w.source)),
        mode=lambda w: "tapt" if w.source == TAPT else "pairs",
        wrapper=lambda w: "none" if w.source == TAPT else config["targets"][w.target]["wrapper"]["adapted"],
        init_adapter=lambda w: f"--init-adapter {init_adapter_dir(w.target)}" if init_adapter_dir(w.target) else "",
        train=train_command("adaptation"),
        checkpoints=lambda w: f"{CHECKPOINTS}/adapters/{w.target}/{w.source}/{w.dataset}",
    log:
        f"{R}/logs/adapt/{{target}}/{{source}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/adapt/{{target}}/{{source}}/{{dataset}}.tsv"
    threads: threads_of("adapt")
    resources: **resources_of("adapt")
    conda:
        "../envs/main.yaml"
    shell:
        "{params.train} --mode {params.mode} --wrapper {params.wrapper} --base {input.base}"
        " {params.init_adapter} --data {input.rows} --out {output.adapter}"
        " --checkpoints {params.checkpoints} --manifest {output.manifest}"
        " --params {params.hp:q} --threads {threads}"
        " --name adapt/{wildcards.target}/{wildcards.source}/{wildcards.dataset} > {log} 2>&1"
