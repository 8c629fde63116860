# Figures, drawn from the compute jobs' manifests by small local jobs (`python -m bonito_repro
# plot`), so that a style change (the config's `plots` section) reruns no generation or training:
# - funnel_plot: the generation funnel of each (generator, dataset);
# - loss_curve: the loss curve beside each trained adapter (Bonito generator, P3 stand-in,
#   adaptation), from the train_loss and validation_loss its manifest records.

localrules:
    funnel_plot,
    loss_curve,


rule funnel_plot:
    input: layout.synthetic("{generator}", "{dataset}", ".manifest.json")
    output:
        report(layout.synthetic("{generator}", "{dataset}", ".funnel.png"), caption="../report/funnel.rst",
               category="Generation", subcategory="{generator}", labels={"dataset": "{dataset}"}),
    params:
        hp=as_json(config["plots"]),
    log: layout.log("funnel_plot/{generator}/{dataset}")
    benchmark: layout.benchmark("funnel_plot/{generator}/{dataset}")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro plot funnel --manifest {{input}} --params {{params.hp:q}}"
        " --out {output} > {log} 2>&1"


rule loss_curve:
    input: layout.beside("{adapter}", ".manifest.json")
    output:
        report(layout.beside("{adapter}", ".loss.png"), caption="../report/loss_curve.rst",
               category="Loss curves", subcategory=lambda w: loss_curve_section(w.adapter)[0],
               labels=lambda w: {"job": loss_curve_section(w.adapter)[1]}),
    wildcard_constraints:
        adapter=dag.adapter_pattern(),
    params:
        hp=as_json(config["plots"]),
    log: layout.log("loss_curve/{adapter}")
    benchmark: layout.benchmark("loss_curve/{adapter}")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro plot loss --manifest {{input}} --params {{params.hp:q}}"
        " --out {output} > {log} 2>&1"
