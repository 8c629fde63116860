# ctga-v1, Bonito's training set: P3 templates remixed into meta-templates (docs/protocol.md, section 4).
# `ctga_download` is the only step that needs the network: a local rule that fills the datasets
# cache with the Hub datasets (paper scale only; embedded and file origins need no download).
# `ctga` then renders offline, in parallel, with the job's threads; it reads the package's two
# annotation tables and the local files of its origins, so that editing one reruns the build.

localrules:
    ctga_download,


rule ctga_download:
    output: layout.ctga("downloads.json")
    params:
        hp=lambda w: as_json(dag.ctga_hp()),
        online=ONLINE,
    log: layout.log("ctga/download")
    benchmark: layout.benchmark("ctga/download")
    threads: dag.threads("download_model")
    resources: **dag.resources("download_model")
    conda: MAIN_ENV
    shell:
        f"{{params.online}} {MAIN_PY} -m bonito_repro ctga download --manifest {{output}} --params {{params.hp:q}}"
        " > {log} 2>&1"


rule ctga:
    input:
        tables=[f"{PACKAGE_DATA}/ctga_template_task_types.csv", f"{PACKAGE_DATA}/ctga_context_fields.csv"],
        files=[path for origin in dag.ctga_origins().values() for path in local_files(origin, "ctga")],
        downloads=dag.ctga_downloads(),
    output:
        train=layout.ctga("train.parquet"), validation=layout.ctga("validation.parquet"), p3=layout.ctga("p3.parquet"),
        manifest=layout.ctga("manifest.json"),
        **({"comparison": layout.ctga("published_comparison.csv")} if dag.ctga_compares() else {}),
    params: **dag.ctga_params()
    log: layout.log("ctga/build")
    benchmark: layout.benchmark("ctga/build")
    threads: dag.threads("ctga")
    resources: **dag.resources("ctga")
    conda: MAIN_ENV
    shell:
        f"{MAIN_PY} -m bonito_repro ctga build --train {{output.train}} --validation {{output.validation}}"
        " --p3 {output.p3} --manifest {output.manifest} {params.comparison} {params.downloads}"
        " --num-proc {threads} --params {params.hp:q} > {log} 2>&1"
