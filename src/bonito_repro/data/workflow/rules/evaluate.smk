# Evaluation of every (target, source, dataset) (`python -m bonito_repro evaluate`), one job per
# triple covering the dataset's five templates, and the table collecting them.
# - source `zero_shot`: the target's base model with its starting adapter if it has one (the P3
#   variants), under the target's `wrapper.zero_shot`; any other source: the adapter trained by
#   `adapt`, under `wrapper.tapt` after TAPT and `wrapper.adapted` otherwise (docs/protocol.md,
#   section 8.1).
# - evaluate: rank classification (the task types core.tasks scores so: yes-no QA, NLI), main
#   environment.
# - evaluate_generation: greedy decoding (extractive QA) with `evaluation.generation_backend`
#   (vllm: the vLLM environment's interpreter and envs/vllm.yaml).
# Each finished template is kept under results/checkpoints/ (layout.evaluation_progress), not a
# declared output: a rerun of a killed job, or the next attempt after a time limit (the retries
# the cost model projects), scores only the templates left.

localrules:
    eval_table,


EVAL_COMMAND = (
    " -m bonito_repro evaluate --model {input.model} {params.adapter} --wrapper {params.wrapper}"
    " --dataset {wildcards.dataset} --task-type {params.task_type:q} --test {input.test}"
    " --templates {params.templates:q} --labels {params.labels:q} --fields {params.fields:q}"
    " --passage {params.passage:q} --params {params.hp:q} --target {wildcards.target}"
    " --source {wildcards.source} --out {output.scores} --predictions {output.predictions}"
    " --manifest {output.manifest} --progress {params.progress} --threads {threads} --device {params.device}"
    " > {log} 2>&1"
)


rule evaluate:
    input: unpack(dag.eval_inputs)
    output: **dag.eval_outputs()
    wildcard_constraints:
        dataset=choice(dag.rank_datasets),
    params: **dag.eval_params(generation=False, python=MAIN_PY)
    log: layout.log("evaluate/{target}/{source}/{dataset}")
    benchmark: layout.benchmark("evaluate/{target}/{source}/{dataset}")
    retries: dag.retries("evaluate")
    threads: dag.threads("evaluate")
    resources: **dag.resources("evaluate")
    conda: MAIN_ENV
    shell: f"{{params.alias}}{MAIN_PY}{EVAL_COMMAND}"


rule evaluate_generation:
    input: unpack(dag.eval_inputs)
    output: **dag.eval_outputs()
    wildcard_constraints:
        dataset=choice(dag.generation_datasets),
    params: **dag.eval_params(generation=True, python=MAIN_PY)
    log: layout.log("evaluate/{target}/{source}/{dataset}")
    benchmark: layout.benchmark("evaluate/{target}/{source}/{dataset}")
    retries: dag.retries("evaluate_generation")
    threads: dag.threads("evaluate")
    resources: **dag.resources("evaluate")
    conda: env_for(config["evaluation"]["generation_backend"])
    shell: f"{{params.alias}}{python_for(config['evaluation']['generation_backend'])}{EVAL_COMMAND}"


rule eval_table:
    input: dag.eval_results()
    output:
        csv=report(dag.run_file("eval_scores.csv"), caption="../report/eval_scores.rst", category="Main table"),
        md=dag.run_file("eval_scores.md"),
    params:
        data=dag.data_caption(dag.evaluated),
    log: layout.log(dag.run_job("eval_table"))
    benchmark: layout.benchmark(dag.run_job("eval_table"))
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro table --inputs {{input:q}} --data {{params.data:q}}"
        " --csv {output.csv} --md {output.md} > {log} 2>&1"
