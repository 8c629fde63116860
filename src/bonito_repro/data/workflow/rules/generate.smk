# Synthetic tasks per (generator, dataset) (`python -m bonito_repro generate`): the dataset's
# passages through the generator with the config's `generation` sampling, every generation
# checked and counted by the funnel; out come the kept tasks (input, output, context_id), every
# generation with its funnel reason, a manifest (funnel_plot in plots.smk draws its funnel) and the
# tasks in bagel's four prompt formats. The rule of each generator kind: bonito_repro.core.generators.
# - generate: kinds `bonito` (`base:` + the adapter trained here, or a full `model:`) and
#   `prompted` (an instruction-tuned `model:` under its chat template), on `generation.backend`.
#   Finished shards live under results/shards/ (layout.shards), not a declared output: a rerun
#   of a killed job skips them.
# - endpoint_tasks: kind `endpoint` (an OpenAI-compatible chat endpoint), run where the endpoint is
#   reachable (a local rule, as downloads are), resumed from shards the same way.
# - published_tasks: kind `published`, a released synthetic set (e.g. BatsResearch/bonito-experiment,
#   config bonito_<dataset>); `{dataset}` in its origin is the dataset key. Local: it downloads.

localrules:
    endpoint_tasks,
    published_tasks,


rule generate:
    input:
        unpack(dag.generator_inputs), passages=layout.unannotated("{dataset}"),
        test=lambda w: dag.test_input(w.dataset),
    output: **synthetic_outputs()
    wildcard_constraints: generator=choice(dag.generators_of(rule="generate"))
    params: **dag.generate_params()
    log: layout.log("generate/{generator}/{dataset}")
    benchmark: layout.benchmark("generate/{generator}/{dataset}")
    priority: 1  # after Bonito training, ahead of the jobs off the longest chain
    threads: dag.threads("generate")
    resources: **dag.resources("generate")
    conda: GENERATION_ENV
    shell:
        f"{GENERATION_PY} -m bonito_repro generate --dataset {{wildcards.dataset}} --kind {{params.kind}}"
        " --task-type {params.task_type:q} --passages {input.passages} {params.test}"
        " --model {input.model} {params.adapter} --params {params.hp:q} --shards {params.shards}"
        " --out {output.rows} --manifest {output.manifest} --records {output.records}"
        " --formats {output.formats} --threads {threads} --device {params.device} > {log} 2>&1"


rule published_tasks:
    input: test=lambda w: dag.test_input(w.dataset)
    output: **synthetic_outputs()
    wildcard_constraints: generator=choice(dag.generators_of(rule="published_tasks"))
    params:
        hp=as_json(config["generation"]), test=test_flag,
        task_type=lambda w: config["datasets"][w.dataset]["task_type"],
        origin=lambda w: as_json(dag.published_origin(w.generator, w.dataset)),
        online=lambda w: online(config["generators"][w.generator]["origin"]),
    log: layout.log("generate/{generator}/{dataset}")
    benchmark: layout.benchmark("generate/{generator}/{dataset}")
    threads: dag.threads("default")
    resources: **dag.resources("default")
    conda: MAIN_ENV
    shell:
        f"{{params.online}} {MAIN_PY} -m bonito_repro generate --dataset {{wildcards.dataset}}"
        " --task-type {params.task_type:q} --published {params.origin:q} {params.test}"
        " --params {params.hp:q} --out {output.rows} --manifest {output.manifest}"
        " --records {output.records} --formats {output.formats} --threads {threads} --device cpu > {log} 2>&1"


rule endpoint_tasks:
    input: passages=layout.unannotated("{dataset}"), test=lambda w: dag.test_input(w.dataset)
    output: **synthetic_outputs()
    wildcard_constraints: generator=choice(dag.generators_of(rule="endpoint_tasks"))
    params: **dag.endpoint_params()
    log: layout.log("generate/{generator}/{dataset}")
    benchmark: layout.benchmark("generate/{generator}/{dataset}")
    threads: dag.threads("default")
    resources: **dag.resources("default")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro generate --dataset {{wildcards.dataset}} --kind endpoint"
        " --task-type {params.task_type:q} --passages {input.passages} {params.test}"
        " --endpoint {params.endpoint:q} --params {params.hp:q} --shards {params.shards}"
        " --out {output.rows} --manifest {output.manifest} --records {output.records}"
        " --formats {output.formats} --threads {threads} --device cpu > {log} 2>&1"
