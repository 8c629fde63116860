# ctga-v1, Bonito's training set: P3 templates remixed into meta-templates (docs/protocol.md, section 4).
# `ctga_download` is the only step that needs the network: a local rule that fills the datasets
# cache with the Hub sources (paper scale only; embedded and file sources need no download).
# `ctga` then renders offline, in parallel, with the job's threads.
from bonito_repro.sources import embedded_path

localrules:
    ctga_download,


CTGA = config["ctga"]
CTGA_DIR = f"{R}/ctga"
CTGA_TABLES = [
    f"{PACKAGE_DATA}/ctga_template_task_types.csv",
    f"{PACKAGE_DATA}/ctga_context_fields.csv",
]


rule ctga_download:
    output:
        f"{CTGA_DIR}/downloads.json",
    params:
        hp=as_json(CTGA),
        online=ONLINE,
    log:
        f"{R}/logs/ctga/download.log",
    benchmark:
        f"{R}/benchmarks/ctga/download.tsv"
    threads: res("download_model")["threads"]
    resources:
        mem_mb=res("download_model")["mem_mb"],
        runtime=res("download_model")["runtime"],
    conda:
        "../envs/main.yaml"
    shell:
        "{params.online} python -m bonito_repro ctga download --manifest {output} --params {params.hp:q}"
        " > {log} 2>&1"


rule ctga:
    input:
        tables=CTGA_TABLES,
        files=ctga_local_files(),
        downloads=ctga_downloads(),
    output:
        train=f"{CTGA_DIR}/train.parquet",
        validation=f"{CTGA_DIR}/validation.parquet",
        p3=f"{CTGA_DIR}/p3.parquet",
        manifest=f"{CTGA_DIR}/manifest.json",
        **({"comparison": f"{CTGA_DIR}/published_comparison.csv"} if ctga_compare() else {}),
    params:
        hp=as_json(CTGA),
        comparison=lambda w, output: f"--comparison {output.comparison}" if ctga_compare() else "",
        downloads=" ".join(f"--downloads {path}" for path in ctga_downloads()),
    log:
        f"{R}/logs/ctga/build.log",
    benchmark:
        f"{R}/benchmarks/ctga/build.tsv"
    threads: res("ctga")["threads"]
    resources:
        mem_mb=res("ctga")["mem_mb"],
        runtime=res("ctga")["runtime"],
    conda:
        "../envs/main.yaml"
    shell:
        "python -m bonito_repro ctga build --train {output.train} --validation {output.validation}"
        " --p3 {output.p3} --manifest {output.manifest} {params.comparison} {params.downloads}"
        " --num-proc {threads} --params {params.hp:q} > {log} 2>&1"
