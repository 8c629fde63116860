# LoRA adaptation of each target on each (source, dataset) (`python -m bonito_repro train`, the
# engine of train.smk): a generator's synthetic tasks (loss on the response) or, for `tapt`, the
# unannotated passages (loss on every token), from the target's starting adapter if it has one.
# A rerun of a killed job continues from its latest complete checkpoint (CHECKPOINTS, common.smk);
# loss_curve (plots.smk) draws its loss curve. The ablations' sources (ablations.smk) train here
# too: a size point on its subset (or, when the subset is the whole set, a copy of the full-set
# adapter: nothing trains twice), a chain (tapt+{generator}) from the TAPT adapter.


rule adapt:
    input:
        base=model_at("targets/{target}/model"),
        init_adapter=lambda w: start_adapter_dir(w.target, w.source, w.dataset) or [],
        rows=lambda w: training_rows(w.source, w.dataset),
        subset=subset_input,
        full=lambda w: adapter_dir(w.target, size[0], w.dataset) if (size := parse_size_source(w.source)) else [],
    output:
        adapter=directory(adapter_dir("{target}", "{source}", "{dataset}")),
        manifest=adapter_dir("{target}", "{source}", "{dataset}") + ".manifest.json",
    wildcard_constraints:
        source=_choice([TAPT, *GENERATORS, *ABLATION_SOURCES]),
    params:
        hp=lambda w: as_json(adaptation_params(w.source)),
        mode=lambda w: "tapt" if w.source == TAPT else "pairs",
        wrapper=lambda w: "none" if w.source == TAPT else config["targets"][w.target]["wrapper"]["adapted"],
        init_adapter=lambda w: f"--init-adapter {start}" if (start := start_adapter_dir(w.target, w.source, w.dataset)) else "",
        alias=lambda w: unless_alias(w, [adapter_dir(w.target, "{source}", w.dataset) + s for s in ("", ".manifest.json")]),
        train=train_command("adaptation"),
        device=config["device"],
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
        f"{{params.alias}}{MAIN_PY} {{params.train}} --mode {{params.mode}} --wrapper {{params.wrapper}}"
        " --base {input.base}"
        " {params.init_adapter} --data {input.rows} --out {output.adapter}"
        " --checkpoints {params.checkpoints} --manifest {output.manifest}"
        " --params {params.hp:q} --threads {threads} --device {params.device}"
        " --name adapt/{wildcards.target}/{wildcards.source}/{wildcards.dataset} > {log} 2>&1"
