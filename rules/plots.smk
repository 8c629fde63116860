# Figures, drawn from the compute jobs' manifests by small local jobs (`python -m bonito_repro
# plot`), so that a style change (the config's `plots` section) reruns no generation or training:
# - funnel_plot: the generation funnel of each (generator, dataset);
# - loss_curve: the loss curve beside each trained adapter (Bonito generator, P3 stand-in,
#   adaptation), from the train_loss and validation_loss its manifest records.

localrules:
    funnel_plot,
    loss_curve,


# a trained adapter's directory under results/, as train.smk writes it: its manifest and loss
# curve lie beside it ({adapter}.manifest.json, {adapter}.loss.png)
ADAPTERS = "|".join([
    f"generators/(?:{_choice(TRAINED_GENERATORS)})/adapter",
    f"generators/(?:{_choice(BACKTRANSLATION_GENERATORS)})/(?:backward|forward)_adapter",
    f"p3/(?:{_choice(P3_MODELS)})/adapter",
    f"adapters/(?:{_choice(TARGETS)})/(?:{_choice([TAPT, *GENERATORS])})/(?:{_choice(DATASETS)})",
])
FIGURES = [
    *(synthetic(g, d, ".funnel.png") for g in SOURCES if g != TAPT for d in DATASETS),
    *(f"{R}/generators/{g}/adapter.loss.png" for g in TRAINED_GENERATORS if g in SOURCES),
    *(f"{R}/generators/{g}/{d}_adapter.loss.png" for g in BACKTRANSLATION_GENERATORS if g in SOURCES
      for d in ("backward", "forward")),
    *(f"{R}/p3/{m}/adapter.loss.png" for m in P3_MODELS),
    *(adapter_dir(t, s, d) + ".loss.png" for t in TARGETS for s in SOURCES for d in DATASETS),
]


rule funnel_plot:
    input:
        synthetic("{generator}", "{dataset}", ".manifest.json"),
    output:
        report(synthetic("{generator}", "{dataset}", ".funnel.png"), caption="../report/funnel.rst",
               category="Generation", subcategory="{generator}", labels={"dataset": "{dataset}"}),
    params:
        hp=as_json(config["plots"]),
    log:
        f"{R}/logs/funnel_plot/{{generator}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/funnel_plot/{{generator}}/{{dataset}}.tsv"
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro plot funnel --manifest {{input}} --params {{params.hp:q}}"
        " --out {output} > {log} 2>&1"


rule loss_curve:
    input:
        f"{R}/{{adapter}}.manifest.json",
    output:
        report(f"{R}/{{adapter}}.loss.png", caption="../report/loss_curve.rst", category="Loss curves",
               subcategory=lambda w: loss_curve_section(w.adapter)[0],
               labels=lambda w: {"job": loss_curve_section(w.adapter)[1]}),
    wildcard_constraints:
        adapter=ADAPTERS,
    params:
        hp=as_json(config["plots"]),
    log:
        f"{R}/logs/loss_curve/{{adapter}}.log",
    benchmark:
        f"{R}/benchmarks/loss_curve/{{adapter}}.tsv"
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro plot loss --manifest {{input}} --params {{params.hp:q}}"
        " --out {output} > {log} 2>&1"
