# Bonito (Nayak et al., 2024) as one workflow. Rules are thin: each calls one package CLI
# (`python -m bonito_repro STAGE`); all logic lives in src/bonito_repro/.
#   snakemake --profile local    embedded default (config/local.yaml), 2-core CPU, no network
#   snakemake --profile slurm    the paper's experiment (config.yaml) on a GPU cluster
from snakemake.utils import min_version

min_version("9.20")

# A profile or --configfile picks a standalone config; only without one is config.yaml read
# (config files are deep-merged, so an overlay could never drop the paper's entries).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/ctga.smk"
include: "rules/train.smk"
include: "rules/generate.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/plots.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
