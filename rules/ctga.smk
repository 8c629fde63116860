# ctga-v1, Bonito's training set: P3 templates remixed into meta-templates (docs/protocol.md, section 4).
# `ctga_download` is the only step that needs the network: a local rule that fills the datasets
# cache with the Hub datasets (paper scale only; embedded and file origins need no download).
# `ctga` then renders offline, in parallel, with the job's threads.
from bonito_repro.core import PACKAGE_DATA

localrules:
    ctga_download,


CTGA = config["ctga"]
CTGA_DIR = f"{R}/ctga"
CTGA_TABLES = [
    f"{PACKAGE_DATA}/ctga_template_task_types.csv",
    f"{PACKAGE_DATA}/ctga_context_fields.csv",
]
# compare the built set with the published one (a paper-scale check that downloads it)
CTGA_COMPARE = CTGA.get("compare_published", False) and not CTGA["use_published"]
# the origins the build reads: the published set's (used or compared) and the P3 datasets'
CTGA_ORIGINS = {"published": CTGA["published"]} if CTGA["use_published"] or CTGA_COMPARE else {}
if not CTGA["use_published"]:
    CTGA_ORIGINS.update(CTGA["p3_datasets"])
# local files they read (editing one reruns the build), and the download Hub origins need
CTGA_FILES = [path for origin in CTGA_ORIGINS.values() for path in local_files("ctga", origin)]
CTGA_DOWNLOADS = [f"{CTGA_DIR}/downloads.json"] if any("hub" in o for o in CTGA_ORIGINS.values()) else []


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
    threads: threads_of("download_model")
    resources: **resources_of("download_model")
    conda:
        "../envs/main.yaml"
    shell:
        f"{{params.online}} {MAIN_PY} -m bonito_repro ctga download --manifest {{output}} --params {{params.hp:q}}"
        " > {log} 2>&1"


rule ctga:
    input:
        tables=CTGA_TABLES,
        files=CTGA_FILES,
        downloads=CTGA_DOWNLOADS,
    output:
        train=f"{CTGA_DIR}/train.parquet",
        validation=f"{CTGA_DIR}/validation.parquet",
        p3=f"{CTGA_DIR}/p3.parquet",
        manifest=f"{CTGA_DIR}/manifest.json",
        **({"comparison": f"{CTGA_DIR}/published_comparison.csv"} if CTGA_COMPARE else {}),
    params:
        hp=as_json(CTGA),
        comparison=lambda w, output: f"--comparison {output.comparison}" if CTGA_COMPARE else "",
        downloads=" ".join(f"--downloads {path}" for path in CTGA_DOWNLOADS),
    log:
        f"{R}/logs/ctga/build.log",
    benchmark:
        f"{R}/benchmarks/ctga/build.tsv"
    threads: threads_of("ctga")
    resources: **resources_of("ctga")
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro ctga build --train {{output.train}} --validation {{output.validation}}"
        " --p3 {output.p3} --manifest {output.manifest} {params.comparison} {params.downloads}"
        " --num-proc {threads} --params {params.hp:q} > {log} 2>&1"
