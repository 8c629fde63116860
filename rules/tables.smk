# The paper's tables, from collected scores only: a style change reruns only these jobs.

localrules:
    main_table,


MAIN_TABLES = [f"{R}/paper/{name}.{ext}" for name in ("main_table", "main_table_deltas", "published_comparison")
               for ext in ("csv", "md", "tex")]


rule main_table:
    input:
        f"{R}/paper/eval_scores.csv",
    output:
        MAIN_TABLES,
    params:
        hp=as_json({key: config[key] for key in ("scale", "models", "targets", "datasets", "sources", "tables")}),
    log:
        f"{R}/logs/paper/main_table.log",
    benchmark:
        f"{R}/benchmarks/paper/main_table.tsv"
    conda:
        "../envs/main.yaml"
    shell:
        "{PY} -m bonito_repro main-table --scores {input} --params {params.hp:q}"
        " --out-dir {R}/paper > {log} 2>&1"


def all_outputs():
    return MAIN_TABLES
