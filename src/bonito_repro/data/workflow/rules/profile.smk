# The quality profile of every (generator, dataset) the run adapts on (`python -m bonito_repro
# quality-profile`): one table across generators, beside the funnels, read from the synthetic sets
# and their manifests only, so it never reruns a generation.

localrules:
    quality_profile,


rule quality_profile:
    input:
        synthetic=[layout.synthetic(g, d) for g, d in dag.synthetic_sets()],
        manifests=[layout.synthetic(g, d, ".manifest.json") for g, d in dag.synthetic_sets()],
        passages=[layout.unannotated(d) for _, d in dag.synthetic_sets()],
    output:
        csv=report(dag.run_file("quality_profile.csv"), caption="../report/quality_profile.rst", category="Generation"),
        md=dag.run_file("quality_profile.md"),
    params:
        hp=as_json(dag.quality_profile_params()),
    log: layout.log(dag.run_job("quality_profile"))
    benchmark: layout.benchmark(dag.run_job("quality_profile"))
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro quality-profile --synthetic {{input.synthetic}}"
        " --manifests {input.manifests} --passages {input.passages} --params {params.hp:q}"
        " --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
