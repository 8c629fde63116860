# Synthetic tasks per (generator, dataset) (`python -m bonito_repro generate`): the dataset's
# passages through the generator with the config's `generation` sampling, every generation
# checked and counted by the funnel; out come the kept tasks (input, output, context_id), every
# generation with its funnel reason, a manifest (funnel_plot in plots.smk draws its funnel) and the
# tasks in bagel's four prompt formats.
# - generate: generators of kind `bonito` (`base:` + the adapter trained here, or a full `model:`)
#   and `prompted` (an instruction-tuned `model:` under its chat template), with
#   `generation.backend` (vllm: the vLLM environment's interpreter and envs/vllm.yaml).
#   Finished shards live under results/shards/ (same relative path), which is not a declared
#   output: a rerun of a killed job skips them.
# - endpoint_tasks: generators of kind `endpoint` (an OpenAI-compatible chat endpoint), run where
#   the endpoint is reachable (a local rule, as downloads are), resumed from shards the same way.
# - published_tasks: generators of kind `published` read a released synthetic set (e.g.
#   BatsResearch/bonito-experiment, config bonito_<dataset>); `{dataset}` in its origin is
#   the dataset key. Local: it downloads, as the data rules do.

SHARDS = f"{R}/shards"
MODEL_GENERATORS = sorted(g for g, s in config["generators"].items() if s["kind"] in ("bonito", "prompted"))
ENDPOINT_GENERATORS = sorted(g for g, s in config["generators"].items() if s["kind"] == "endpoint")
PUBLISHED_GENERATORS = sorted(g for g, s in config["generators"].items() if s["kind"] == "published")
GENERATION_ENV = "../envs/vllm.yaml" if config["generation"]["backend"] == "vllm" else "../envs/main.yaml"
GENERATION_PY = python_for(config["generation"]["backend"])
# everything both rules write for one (generator, dataset)
SYNTHETIC_OUTPUTS = dict(
    rows=synthetic("{generator}", "{dataset}"),
    manifest=synthetic("{generator}", "{dataset}", ".manifest.json"),
    records=synthetic("{generator}", "{dataset}", ".funnel.parquet"),
    formats=directory(synthetic("{generator}", "{dataset}", ".formats")),
)


rule generate:
    input:
        unpack(generator_inputs),
        passages=f"{R}/unannotated/{{dataset}}.parquet",
        test=lambda w: test_split(w.dataset),
    output:
        **SYNTHETIC_OUTPUTS,
    wildcard_constraints:
        generator=_choice(MODEL_GENERATORS),
    params:
        hp=lambda w: as_json(generation_params(w.generator)),
        kind=lambda w: config["generators"][w.generator]["kind"],
        test=test_arg,
        task_type=lambda w: config["datasets"][w.dataset]["task_type"],
        adapter=lambda w, input: f"--adapter {input.adapter}" if "adapter" in input.keys() else "",
        shards=lambda w: f"{SHARDS}/{w.generator}/{w.dataset}",
        device=config["device"],
    log:
        f"{R}/logs/generate/{{generator}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/generate/{{generator}}/{{dataset}}.tsv"
    priority: 1  # after Bonito training, ahead of the jobs off the longest chain
    threads: threads_of("generate")
    resources: **resources_of("generate")
    conda:
        GENERATION_ENV
    shell:
        f"{GENERATION_PY} -m bonito_repro generate --dataset {{wildcards.dataset}} --kind {{params.kind}}"
        " --task-type {params.task_type:q} --passages {input.passages} {params.test}"
        " --model {input.model} {params.adapter} --params {params.hp:q} --shards {params.shards}"
        " --out {output.rows} --manifest {output.manifest} --records {output.records}"
        " --formats {output.formats} --threads {threads} --device {params.device} > {log} 2>&1"


if PUBLISHED_GENERATORS:

    localrules:
        published_tasks,

    rule published_tasks:
        input:
            test=lambda w: test_split(w.dataset),
        output:
            **SYNTHETIC_OUTPUTS,
        wildcard_constraints:
            generator=_choice(PUBLISHED_GENERATORS),
        params:
            hp=as_json(config["generation"]),
            test=test_arg,
            task_type=lambda w: config["datasets"][w.dataset]["task_type"],
            origin=lambda w: as_json(published_origin(w.generator, w.dataset)),
            online=lambda w: ONLINE if "hub" in config["generators"][w.generator]["origin"] else "",
        log:
            f"{R}/logs/generate/{{generator}}/{{dataset}}.log",
        benchmark:
            f"{R}/benchmarks/generate/{{generator}}/{{dataset}}.tsv"
        threads: threads_of("default")
        resources: **resources_of("default")
        conda:
            "../envs/main.yaml"
        shell:
            f"{{params.online}} {MAIN_PY} -m bonito_repro generate --dataset {{wildcards.dataset}}"
            " --task-type {params.task_type:q} --published {params.origin:q} {params.test}"
            " --params {params.hp:q} --out {output.rows} --manifest {output.manifest}"
            " --records {output.records} --formats {output.formats}"
            " --threads {threads} --device cpu > {log} 2>&1"


if ENDPOINT_GENERATORS:

    localrules:
        endpoint_tasks,

    rule endpoint_tasks:
        input:
            passages=f"{R}/unannotated/{{dataset}}.parquet",
            test=lambda w: test_split(w.dataset),
        output:
            **SYNTHETIC_OUTPUTS,
        wildcard_constraints:
            generator=_choice(ENDPOINT_GENERATORS),
        params:
            hp=lambda w: as_json(generation_params(w.generator)),
            test=test_arg,
            endpoint=lambda w: as_json({k: v for k, v in config["generators"][w.generator].items() if k != "sampling"}),
            task_type=lambda w: config["datasets"][w.dataset]["task_type"],
            shards=lambda w: f"{SHARDS}/{w.generator}/{w.dataset}",
        log:
            f"{R}/logs/generate/{{generator}}/{{dataset}}.log",
        benchmark:
            f"{R}/benchmarks/generate/{{generator}}/{{dataset}}.tsv"
        threads: threads_of("default")
        resources: **resources_of("default")
        conda:
            "../envs/main.yaml"
        shell:
            f"{MAIN_PY} -m bonito_repro generate --dataset {{wildcards.dataset}} --kind endpoint"
            " --task-type {params.task_type:q} --passages {input.passages} {params.test}"
            " --endpoint {params.endpoint:q} --params {params.hp:q} --shards {params.shards}"
            " --out {output.rows} --manifest {output.manifest} --records {output.records}"
            " --formats {output.formats} --threads {threads} --device cpu > {log} 2>&1"
