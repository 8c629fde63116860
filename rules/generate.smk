# Synthetic tasks per (generator, dataset) (`python -m bonito_repro generate`): the dataset's
# passages through the generator with the config's `generation` sampling, every generation
# checked and counted by the funnel; out come the kept tasks (input, output, context_id), every
# generation with its funnel reason, a manifest (funnel_plot in plots.smk draws its funnel) and the
# tasks in bagel's four prompt formats.
# - generate: generators of kind `bonito` (`base:` + the adapter trained here, or a full `model:`),
#   with `generation.backend` (vllm: the vLLM environment's interpreter and envs/vllm.yaml).
#   Finished shards live under results/shards/ (same relative path), which is not a declared
#   output: a rerun of a killed job skips them.
# - published_tasks: generators of kind `published` read a released synthetic set (e.g.
#   BatsResearch/bonito-experiment, config bonito_<dataset>); `{dataset}` in its origin is
#   the dataset key. Local: it downloads, as the data rules do.

SHARDS = f"{R}/shards"
BONITO_GENERATORS = sorted(g for g, s in config["generators"].items() if s["kind"] == "bonito")
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
        test=f"{R}/test/{{dataset}}.parquet",
    output:
        **SYNTHETIC_OUTPUTS,
    wildcard_constraints:
        generator=_choice(BONITO_GENERATORS),
    params:
        hp=as_json(config["generation"]),
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
        f"{GENERATION_PY} -m bonito_repro generate --dataset {{wildcards.dataset}}"
        " --task-type {params.task_type:q} --passages {input.passages} --test {input.test}"
        " --model {input.model} {params.adapter} --params {params.hp:q} --shards {params.shards}"
        " --out {output.rows} --manifest {output.manifest} --records {output.records}"
        " --formats {output.formats} --threads {threads} --device {params.device} > {log} 2>&1"


if PUBLISHED_GENERATORS:

    localrules:
        published_tasks,

    rule published_tasks:
        input:
            test=f"{R}/test/{{dataset}}.parquet",
        output:
            **SYNTHETIC_OUTPUTS,
        wildcard_constraints:
            generator=_choice(PUBLISHED_GENERATORS),
        params:
            hp=as_json(config["generation"]),
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
            " --task-type {params.task_type:q} --published {params.origin:q} --test {input.test}"
            " --params {params.hp:q} --out {output.rows} --manifest {output.manifest}"
            " --records {output.records} --formats {output.formats}"
            " --threads {threads} --device cpu > {log} 2>&1"
