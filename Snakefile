# Bonito (Nayak et al., 2024) as one workflow. Rules are thin: each calls one package CLI
# (`python -m bonito_repro STAGE`); all logic lives in src/bonito_repro/.
#   snakemake --profile local    embedded default (config/local.yaml), 2-core CPU, no network
#   snakemake --profile slurm    the paper's experiment (config.yaml) on a GPU cluster
import os

from snakemake.utils import min_version

min_version("9.20")

from bonito_repro.core.config import ConfigError, read_yaml

# config.yaml is the base of every scale; a profile's or the command line's --configfile overlays
# it (Snakemake merges them key by key). By absolute path, so that `-d DIR` runs find it too.
# Read first by read_yaml: Snakemake's message for a broken file names neither file nor line.
BASE_CONFIG = os.path.join(workflow.basedir, "config.yaml")
try:
    read_yaml(BASE_CONFIG)
except ConfigError as error:
    raise WorkflowError(str(error)) from None


configfile: BASE_CONFIG


report: "report/workflow.rst"


include: "rules/common.smk"
# in the order of the DAG
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/ctga.smk"
include: "rules/train.smk"
include: "rules/generate.smk"
include: "rules/backtranslation.smk"
include: "rules/adapt.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/plots.smk"
include: "rules/cards.smk"
include: "rules/profile.smk"
include: "rules/ablations.smk"


# The targets, each requesting what bonito_repro.workflow.dag.Dag.final_outputs lists: `all`
# (the default) the paper's tables beside the no-model baselines, every figure, the parse checks,
# the quality profile and the cards; `ablation_*` one ablation each (docs/ablations.md).
TARGETS = dag.final_outputs()


rule all:
    input: TARGETS["all"]
    default_target: True


rule ablation_generators:
    input: TARGETS["ablation_generators"]


rule ablation_size:
    input: TARGETS["ablation_size"]


rule ablation_domain:
    input: TARGETS["ablation_domain"]


rule ablations:
    input: rules.ablation_generators.input, rules.ablation_size.input, rules.ablation_domain.input


# The retries each long GPU rule got (Dag.retries: the attempts the cost model projects for its
# longest job, plus one; a rule derived by `use rule` keeps its parent's), shown once by every run
# and dry run; a rule with no job keeps the profile's retries and is not shown.
if workflow.is_main_process:
    logger.info("retries of the long GPU rules (cost model, docs/reliability.md): "
                + ", ".join(f"{rule} {n}" for rule, n in sorted(dag.rule_retries.items()) if n))
