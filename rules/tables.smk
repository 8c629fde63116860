# The paper's tables, from collected scores only: a style change reruns only these jobs.

localrules:
    main_table,
    baselines,


MAIN_TABLES = [f"{R}/paper/{name}.{ext}" for name in ("main_table", "main_table_deltas", "published_comparison")
               for ext in ("csv", "md", "tex")]
BASELINES = [f"{R}/paper/baselines.csv", f"{R}/paper/baselines.md"]


rule main_table:
    input:
        f"{R}/paper/eval_scores.csv",
    output:
        [report(path, caption=f"../report/{os.path.basename(path)[:-4]}.rst", category="Main table")
         if path.endswith(".csv") else path for path in MAIN_TABLES],
    params:
        hp=as_json({**{key: config[key] for key in ("scale", "models", "targets", "tables")},
                    "run": {**config["run"], "datasets": [d for d in config["run"]["datasets"] if d in EVALUATED]},
                    "datasets": {d: {"title": config["datasets"][d]["title"]} for d in EVALUATED}}),
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        f"{R}/logs/paper/main_table.log",
    benchmark:
        f"{R}/benchmarks/paper/main_table.tsv"
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro main-table --scores {{input}} --params {{params.hp:q}}"
        " --out-dir {params.out_dir} > {log} 2>&1"



# Majority-class, random-label and random-span F1 on the rows the evaluations score: no model.
rule baselines:
    input:
        [f"{R}/test/{dataset}.parquet" for dataset in config["run"]["datasets"] if dataset in EVALUATED],
    output:
        csv=report(f"{R}/paper/baselines.csv", caption="../report/baselines.rst", category="Main table"),
        md=f"{R}/paper/baselines.md",
        manifest=f"{R}/paper/baselines.manifest.json",
    params:
        hp=as_json({"scale": config["scale"], "tables": config["tables"],
                    "evaluation": {k: config["evaluation"][k] for k in ("max_examples", "seed", "bootstrap")},
                    # a dataset's passage only where a random span is drawn from it (extractive QA)
                    "datasets": {d: {k: spec.get(k) for k in ("title", "task_type", "labels", "test_fields")}
                                 | ({"passage": spec["passage"]} if d in GENERATION_DATASETS else {})
                                 for d, spec in config["datasets"].items() if d in EVALUATED}}),
    log:
        f"{R}/logs/paper/baselines.log",
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro baselines --tests {{input:q}} --params {{params.hp:q}}"
        " --csv {output.csv} --md {output.md} --manifest {output.manifest} > {log} 2>&1"
