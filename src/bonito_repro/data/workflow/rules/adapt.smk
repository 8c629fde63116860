# LoRA adaptation of each target on each (source, dataset) (`python -m bonito_repro train`, the
# engine of train.smk): a generator's synthetic tasks (loss on the response) or, for `tapt`, the
# unannotated passages (loss on every token), from the target's starting adapter if it has one.
# A rerun of a killed job continues from its latest complete checkpoint (layout.checkpoints);
# loss_curve (plots.smk) draws its loss curve. The ablations' sources train here too: a size point
# on its subset (or, when the subset is the whole set, a copy of the full-set adapter: nothing
# trains twice), a chain (tapt+{generator}) from the TAPT adapter.

ADAPTER = layout.adapter("{target}", "{source}", "{dataset}")


rule adapt:
    input: unpack(dag.adapt_inputs)
    output: adapter=directory(ADAPTER), manifest=f"{ADAPTER}.manifest.json"
    wildcard_constraints: source=choice([TAPT, *dag.generators, *dag.ablation_sources])
    params: **dag.adapt_params(MAIN_PY)
    log: layout.log("adapt/{target}/{source}/{dataset}")
    benchmark: layout.benchmark("adapt/{target}/{source}/{dataset}")
    threads: dag.threads("adapt")
    resources: **dag.resources("adapt")
    conda: MAIN_ENV
    shell:
        f"{{params.alias}}{MAIN_PY} {{params.train}} --mode {{params.mode}} --wrapper {{params.wrapper}}"
        " --base {input.base} {params.init_adapter} --data {input.rows} --out {output.adapter}"
        " --checkpoints {params.checkpoints} --manifest {output.manifest} --params {params.hp:q}"
        " --threads {threads} --device {params.device}"
        " --name adapt/{wildcards.target}/{wildcards.source}/{wildcards.dataset} > {log} 2>&1"
