# The paper's tables, from collected scores only: a style change reruns only these jobs.

localrules:
    main_table,


MAIN_TABLES = [f"{R}/paper/{name}.{ext}" for name in ("main_table", "main_table_deltas", "published_comparison")
               for ext in ("csv", "md", "tex")]


rule main_table:
    input:
        f"{R}/paper/eval_scores.csv",
    output:
        [report(path, caption=f"../report/{os.path.basename(path)[:-4]}.rst", category="Main table")
         if path.endswith(".csv") else path for path in MAIN_TABLES],
    params:
        hp=as_json({**{key: config[key] for key in ("scale", "run", "models", "targets", "tables")},
                    "datasets": {d: {"title": spec["title"]} for d, spec in config["datasets"].items()}}),
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

