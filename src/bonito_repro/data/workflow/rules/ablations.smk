# This project's reading of the paper's three ablations (bonito_repro.workflow.ablations;
# docs/ablations.md; no available source gives the paper's sizes, targets or designs), each a target
# of its own: ablation_generators, ablation_size, ablation_domain, and `ablations` for all three.
# Their adaptations and evaluations are the main rules' (adapt.smk, evaluate.smk) at the sources
# they add (size points {generator}.n{N}, chains tapt+{generator}); a cell that coincides with the
# main grid is its job. Here: the nested subsets, the transfer evaluations and the figures.
from dataclasses import asdict

localrules:
    subsample,
    ablation_figure,


rule subsample:
    input: layout.synthetic("{generator}", "{dataset}")
    output:
        rows=layout.subset("{generator}", "{dataset}", "{size}"),
        manifest=layout.subset("{generator}", "{dataset}", "{size}", ".manifest.json"),
    params:
        seed=config["ablations"]["seed"],
    log: layout.log("subsample/{generator}/{dataset}.n{size}")
    benchmark: layout.benchmark("subsample/{generator}/{dataset}.n{size}")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro ablations subsample --rows {{input}} --size {{wildcards.size}}"
        " --seed {params.seed} --out {output.rows} --manifest {output.manifest} > {log} 2>&1"


# each dataset's adapted model on another dataset of its task type
use rule evaluate as evaluate_transfer with:
    output: **dag.eval_outputs(transfer=True)
    log: layout.log("evaluate/{target}/{source}/{train_dataset}/on_{dataset}")
    benchmark: layout.benchmark("evaluate/{target}/{source}/{train_dataset}/on_{dataset}")


use rule evaluate_generation as evaluate_transfer_generation with:
    output: **dag.eval_outputs(transfer=True)
    log: layout.log("evaluate/{target}/{source}/{train_dataset}/on_{dataset}")
    benchmark: layout.benchmark("evaluate/{target}/{source}/{train_dataset}/on_{dataset}")


rule ablation_figure:
    input: lambda w: sorted({path for cell in dag.cells[w.figure] for path in cell.files()})
    output:
        png=report(layout.ablation_figure("{figure}", "png", dag.run_name), caption="../report/ablation.rst",
                   category="Ablations", labels={"figure": "{figure}"}),
        csv=layout.ablation_figure("{figure}", "csv", dag.run_name),
        md=layout.ablation_figure("{figure}", "md", dag.run_name),
    wildcard_constraints:
        figure=choice(dag.ablation_figures),
    params:
        cells=lambda w: as_json({"cells": [asdict(c) for c in dag.cells[w.figure]]}),
        hp=as_json(dag.ablation_figure_params()),
    log: layout.log(dag.run_job("ablations/{figure}"))
    benchmark: layout.benchmark(dag.run_job("ablations/{figure}"))
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro ablation-figures --figure {{wildcards.figure}} --cells {{params.cells:q}}"
        " --params {params.hp:q} --png {output.png} --csv {output.csv} --md {output.md} > {log} 2>&1"
