# The paper's tables, from collected scores only: a style change reruns only these jobs.
# - main_table: the main table, its deltas with their paired bootstrap intervals (from the
#   evaluations' per-example predictions) and the published comparison (csv, md, tex);
# - baselines: majority-class, random-label and random-span F1 on the rows the evaluations
#   score: no model.

localrules:
    main_table,
    baselines,


rule main_table:
    input: scores=dag.run_file("eval_scores.csv"), predictions=dag.eval_results(suffix=layout.PREDICTIONS)
    output:
        [report(path, caption=f"../report/{os.path.basename(path)[:-4]}.rst", category="Main table")
         if path.endswith(".csv") else path for path in dag.main_tables()],
    params:
        hp=as_json(dag.main_table_params()),
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log: layout.log(dag.run_job("main_table"))
    benchmark: layout.benchmark(dag.run_job("main_table"))
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro main-table --scores {{input.scores}} --predictions {{input.predictions:q}}"
        " --params {params.hp:q} --out-dir {params.out_dir} > {log} 2>&1"


rule baselines:
    input: dag.baselines_inputs()
    output:
        csv=report(dag.run_file("baselines.csv"), caption="../report/baselines.rst", category="Main table"),
        md=dag.run_file("baselines.md"),
        manifest=dag.run_file("baselines.manifest.json"),
    params:
        hp=as_json(dag.baselines_params()),
    log: layout.log(dag.run_job("baselines"))
    benchmark: layout.benchmark(dag.run_job("baselines"))
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro baselines --tests {{input:q}} --params {{params.hp:q}}"
        " --csv {output.csv} --md {output.md} --manifest {output.manifest} > {log} 2>&1"
