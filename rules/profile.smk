# The quality profile of every (generator, dataset) the run adapts on (`python -m bonito_repro
# quality-profile`): one table across generators, beside the funnels, read from the synthetic sets
# and their manifests only, so it never reruns a generation.

localrules:
    quality_profile,


PROFILE_CELLS = [(g, d) for g in SOURCES if g != TAPT for d in DATASETS]
QUALITY_PROFILE = [f"{R}/paper/quality_profile.{ext}" for ext in ("csv", "md")] if PROFILE_CELLS else []


rule quality_profile:
    input:
        synthetic=[synthetic(g, d) for g, d in PROFILE_CELLS],
        manifests=[synthetic(g, d, ".manifest.json") for g, d in PROFILE_CELLS],
        passages=[f"{R}/unannotated/{d}.parquet" for _, d in PROFILE_CELLS],
    output:
        csv=report(f"{R}/paper/quality_profile.csv", caption="../report/quality_profile.rst", category="Generation"),
        md=f"{R}/paper/quality_profile.md",
    params:
        hp=as_json({"cells": [[g, d, config["datasets"][d]["task_type"]] for g, d in PROFILE_CELLS],
                    "decimals": config["tables"]["decimals"], "scale": config["scale"]}),
    log:
        f"{R}/logs/paper/quality_profile.log",
    conda:
        "../envs/main.yaml"
    shell:
        f"{MAIN_PY} -m bonito_repro quality-profile --synthetic {{input.synthetic}}"
        " --manifests {input.manifests} --passages {input.passages} --params {params.hp:q}"
        " --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
