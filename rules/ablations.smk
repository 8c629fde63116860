# The paper's three ablations (bonito_repro.workflow.ablations; README, "Ablations"), each a target of its
# own: ablation_generators, ablation_size, ablation_domain, and `ablations` for all three. Their
# adaptations and evaluations are the main rules' (adapt.smk, evaluate.smk) at the sources they
# add (size points {generator}.n{N}, chains tapt+{generator}); a cell that coincides with the main
# grid is its job. Here: the nested subsets, the transfer evaluations and the figures.
from dataclasses import asdict

from bonito_repro.workflow.ablations import ablation_cells, figures_of

localrules:
    subsample,
    ablation_figure,


ABLATION_FIGURES = {f: [f"{R}/paper/ablations/{f}.{ext}" for ext in ("png", "csv", "md")]
                    for f in figures_of(config)}
CELLS = {f: ablation_cells(config, f) for f in ABLATION_FIGURES}
# what each ablation target of the Snakefile requests
ABLATION_OUTPUTS = {a: [path for f in figures_of(config, a) for path in ABLATION_FIGURES[f]]
                    for a in ("generators", "size", "domain")}


rule subsample:
    input:
        synthetic("{generator}", "{dataset}"),
    output:
        rows=synthetic("{generator}", "{dataset}", ".n{size}.parquet"),
        manifest=synthetic("{generator}", "{dataset}", ".n{size}.manifest.json"),
    params:
        seed=config["ablations"]["seed"],
    log:
        f"{R}/logs/subsample/{{generator}}/{{dataset}}.n{{size}}.log",
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro ablations subsample --rows {{input}} --size {{wildcards.size}} --seed {{params.seed}}"
        " --out {output.rows} --manifest {output.manifest} > {log} 2>&1"


# each dataset's adapted model on another dataset of its task type
TRANSFER = f"{R}/eval/{{target}}/{{source}}/{{train_dataset}}/on_{{dataset}}"
TRANSFER_OUTPUTS = dict(scores=f"{TRANSFER}.json", predictions=f"{TRANSFER}.predictions.parquet",
                        manifest=f"{TRANSFER}.manifest.json")


use rule evaluate as evaluate_transfer with:
    output:
        **TRANSFER_OUTPUTS,
    log:
        f"{R}/logs/evaluate/{{target}}/{{source}}/{{train_dataset}}/on_{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{target}}/{{source}}/{{train_dataset}}/on_{{dataset}}.tsv"


use rule evaluate_generation as evaluate_transfer_generation with:
    output:
        **TRANSFER_OUTPUTS,
    log:
        f"{R}/logs/evaluate/{{target}}/{{source}}/{{train_dataset}}/on_{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{target}}/{{source}}/{{train_dataset}}/on_{{dataset}}.tsv"


rule ablation_figure:
    input:
        lambda w: sorted({path for cell in CELLS[w.figure] for path in cell.files()}),
    output:
        png=report(f"{R}/paper/ablations/{{figure}}.png", caption="../report/ablation.rst",
                   category="Ablations", labels={"figure": "{figure}"}),
        csv=f"{R}/paper/ablations/{{figure}}.csv",
        md=f"{R}/paper/ablations/{{figure}}.md",
    wildcard_constraints:
        figure=_choice(list(ABLATION_FIGURES)),
    params:
        cells=lambda w: as_json({"cells": [asdict(c) for c in CELLS[w.figure]]}),
        hp=as_json({**config["plots"], **config["tables"], "scale": config["scale"],
                    **{k: config["adaptation"][k] for k in ("one_epoch_below", "max_steps")},
                    "matched_n": config["ablations"]["generators"]["matched_n"],
                    "common_n": config["ablations"]["domain"]["common_n"]}),
    log:
        f"{R}/logs/paper/ablations/{{figure}}.log",
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro ablation-figures --figure {{wildcards.figure}} --cells {{params.cells:q}}"
        " --params {params.hp:q} --png {output.png} --csv {output.csv} --md {output.md} > {log} 2>&1"
