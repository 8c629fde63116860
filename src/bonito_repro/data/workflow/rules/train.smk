# Training on ctga-v1 (`python -m bonito_repro train`, the engine adapt.smk uses too):
# - train_bonito: the Bonito generator, Q-LoRA of a generator's `base` on ctga-v1 (generators
#   with `model:` instead are used as they are and have no rule here);
# - train_p3: the P3-style adapter standing in for BatsResearch/*-P3 (targets with
#   init_adapter: {train_on: p3}), trained on ctga's p3 rows;
# - parse_check (`python -m bonito_repro parse-check`): how many of the first validation contexts
#   the trained generator's greedy output parses on, against its untrained base; a job of its own
#   (inference only), so that changing the check never reruns the training; the base loads as the
#   training loaded it (bonito_training.bf16).
# A rerun of a killed job continues from its latest complete checkpoint (layout.checkpoints).
# train_bonito runs longer than a job may (resources.max_runtime): each attempt ends at its time
# limit and the next, one of the retries the cost model projects, resumes from the last checkpoint.
from bonito_repro.cluster.cost import bonito_retries

GENERATOR_ADAPTER = layout.generator("{generator}", "adapter")
P3_ADAPTER = layout.p3_adapter("{model}")


rule train_bonito:
    input:
        base=dag.model_of("generators", "base"), train=layout.ctga("train.parquet"),
        validation=layout.ctga("validation.parquet"),
    output: adapter=directory(GENERATOR_ADAPTER), manifest=f"{GENERATOR_ADAPTER}.manifest.json"
    wildcard_constraints: generator=choice(dag.generators_of(training_rule="train_bonito"))
    params: **dag.training_params("bonito_training", GENERATOR_ADAPTER)
    log: layout.log("train_bonito/{generator}")
    benchmark: layout.benchmark("train_bonito/{generator}")
    priority: 2  # the head of the longest chain (generate, adapt, evaluate): start it first
    retries: bonito_retries(config)
    threads: dag.threads("train_bonito")
    resources: **dag.resources("train_bonito")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} {{params.train}} --mode pairs --wrapper none --base {{input.base}} --data {{input.train}}"
        " --validation {input.validation} --out {output.adapter} --checkpoints {params.checkpoints}"
        " --manifest {output.manifest} --params {params.hp:q} --threads {threads} --device {params.device}"
        " --name generator/{wildcards.generator} > {log} 2>&1"


rule parse_check:
    input:
        base=dag.model_of("generators", "base"), adapter=GENERATOR_ADAPTER,
        validation=layout.ctga("validation.parquet"),
    output: layout.generator("{generator}", "parse_check.json")
    wildcard_constraints: generator=choice(dag.generators_of(training_rule="train_bonito"))
    params: hp=as_json({**config["parse_check"], "bf16": config["bonito_training"]["bf16"]}), device=config["device"]
    log: layout.log("parse_check/{generator}")
    benchmark: layout.benchmark("parse_check/{generator}")
    threads: dag.threads("generate")  # inference with the generator, as generation runs it
    resources: **dag.resources("generate")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro parse-check --base {{input.base}} --adapter {{input.adapter}}"
        " --validation {input.validation} --params {params.hp:q} --out {output}"
        " --threads {threads} --device {params.device} > {log} 2>&1"


rule train_p3:
    input: base=layout.model_dir("{model}"), train=layout.ctga("p3.parquet")
    output: adapter=directory(P3_ADAPTER), manifest=layout.p3_adapter("{model}", ".manifest.json")
    wildcard_constraints: model=choice(dag.p3_models)
    params: **dag.training_params("p3_training", P3_ADAPTER)
    log: layout.log("train_p3/{model}")
    benchmark: layout.benchmark("train_p3/{model}")
    threads: dag.threads("adapt")
    resources: **dag.resources("adapt")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} {{params.train}} --mode pairs --wrapper io --base {{input.base}} --data {{input.train}}"
        " --out {output.adapter} --checkpoints {params.checkpoints} --manifest {output.manifest}"
        " --params {params.hp:q} --threads {threads} --device {params.device}"
        " --name p3/{wildcards.model} > {log} 2>&1"
