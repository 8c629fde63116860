# Bonito (Nayak et al., 2024) as one workflow. Rules are thin: each calls one package CLI
# (`python -m bonito_repro STAGE`); all logic lives in src/bonito_repro/.
#   snakemake --profile local    embedded default (config/local.yaml), 2-core CPU, no network
#   snakemake --profile slurm    the paper's experiment (config.yaml) on a GPU cluster
import os

from snakemake.utils import min_version

min_version("9.20")

# config.yaml is the base of every scale; a profile's or the command line's --configfile overlays
# it (Snakemake merges them key by key). By absolute path, so that `-d DIR` runs find it too.
configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
# in the order of the DAG
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/ctga.smk"
include: "rules/train.smk"
include: "rules/generate.smk"
include: "rules/adapt.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/plots.smk"
include: "rules/ablations.smk"


# The default target: the paper's tables, every figure and the trained generators' parse checks.
rule all:
    input:
        MAIN_TABLES,
        FIGURES,
        PARSE_CHECKS,
    default_target: True


# The paper's ablations (rules/ablations.smk; README, "Ablations"), outside the default target.
rule ablation_generators:
    input:
        ABLATION_OUTPUTS["generators"],


rule ablation_size:
    input:
        ABLATION_OUTPUTS["size"],


rule ablation_domain:
    input:
        ABLATION_OUTPUTS["domain"],


rule ablations:
    input:
        rules.ablation_generators.input,
        rules.ablation_size.input,
        rules.ablation_domain.input,
