# Evaluation of every (target, source, dataset) (`python -m bonito_repro evaluate`), one job per
# triple covering the dataset's five templates, and the table collecting them.
# - source `zero_shot`: the target's base model with its starting adapter if it has one (the P3
#   variants), under the target's `wrapper.zero_shot`; any other source: the adapter trained by
#   `adapt`, under `wrapper.tapt` after TAPT and `wrapper.adapted` otherwise (docs/protocol.md,
#   section 8.1).
# - evaluate: rank classification (yes-no QA, NLI datasets), main environment.
# - evaluate_generation: greedy decoding (extractive QA datasets) with
#   `evaluation.generation_backend` (vllm: the vLLM environment's interpreter and envs/vllm.yaml).
from bonito_repro.core.tasks import task_type_code

localrules:
    eval_table,


GENERATION_DATASETS = sorted(d for d in EVALUATED if task_type_code(config["datasets"][d]["task_type"]) == "exqa")
RANK_DATASETS = sorted(set(EVALUATED) - set(GENERATION_DATASETS))
EVAL_GENERATION_ENV = ("../envs/vllm.yaml" if config["evaluation"]["generation_backend"] == "vllm"
                       else "../envs/main.yaml")
EVAL_GENERATION_PY = python_for(config["evaluation"]["generation_backend"])
# what an evaluation job writes; eval_table collects every job's scores
EVAL = f"{R}/eval/{{target}}/{{source}}/{{dataset}}"
EVAL_OUTPUTS = dict(scores=f"{EVAL}.json", predictions=f"{EVAL}.predictions.parquet",
                    manifest=f"{EVAL}.manifest.json")
EVAL_RESULTS = expand(f"{EVAL}.json", target=TARGETS, source=[ZERO_SHOT, *SOURCES], dataset=EVALUATED)


EVAL_COMMAND = (
    " -m bonito_repro evaluate --model {input.model} {params.adapter} --wrapper {params.wrapper}"
    " --dataset {wildcards.dataset} --task-type {params.task_type:q} --test {input.test}"
    " --templates {params.templates:q} --labels {params.labels:q} --fields {params.fields:q}"
    " --passage {params.passage:q}"
    " --params {params.hp:q} --target {wildcards.target}"
    " --source {wildcards.source} --out {output.scores} --predictions {output.predictions}"
    " --manifest {output.manifest} --threads {threads} --device {params.device} > {log} 2>&1"
)


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        **EVAL_OUTPUTS,
    wildcard_constraints:
        dataset=_choice(RANK_DATASETS),
    params:
        **eval_params(generation=False),
    log:
        f"{R}/logs/evaluate/{{target}}/{{source}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{target}}/{{source}}/{{dataset}}.tsv"
    threads: threads_of("evaluate")
    resources: **resources_of("evaluate")
    conda:
        "../envs/main.yaml"
    shell:
        f"{{params.alias}}{MAIN_PY}{EVAL_COMMAND}"


rule evaluate_generation:
    input:
        unpack(eval_inputs),
    output:
        **EVAL_OUTPUTS,
    wildcard_constraints:
        dataset=_choice(GENERATION_DATASETS),
    params:
        **eval_params(generation=True),
    log:
        f"{R}/logs/evaluate/{{target}}/{{source}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{target}}/{{source}}/{{dataset}}.tsv"
    threads: threads_of("evaluate")
    resources: **resources_of("evaluate")
    conda:
        EVAL_GENERATION_ENV
    shell:
        f"{{params.alias}}{EVAL_GENERATION_PY}{EVAL_COMMAND}"


rule eval_table:
    input:
        EVAL_RESULTS,
    output:
        csv=report(f"{R}/paper/eval_scores.csv", caption="../report/eval_scores.rst", category="Main table"),
        md=f"{R}/paper/eval_scores.md",
    params:
        scale=config["scale"],
    log:
        f"{R}/logs/paper/eval_table.log",
    benchmark:
        f"{R}/benchmarks/paper/eval_table.tsv"
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro table --inputs {{input:q}} --scale {{params.scale}}"
        " --csv {output.csv} --md {output.md} > {log} 2>&1"
