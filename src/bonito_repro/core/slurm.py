"""How a job asks Slurm for its place: the site settings of the config (`resources.slurm`) and a
job's GPU count, as the Slurm executor plugin's resources (the workflow's jobs) and as the sbatch
or srun options the plugin writes for them (the preflight's GPU job). One function for both, so
that the preflight's job lands where the workflow's GPU jobs will.
"""
from __future__ import annotations

# the plugin's resource -> the option it writes into the sbatch call
# (snakemake_executor_plugin_slurm.submit_string and utils.set_gres_string, 2.8)
PLUGIN_OPTIONS = {"slurm_partition": "-p", "slurm_account": "-A", "qos": "--qos=", "constraint": "-C",
                  "nodes": "--nodes=", "gpu": "--gpus=", "gres": "--gres="}


def job_resources(site: dict, gpus: int) -> dict:
    """The Slurm executor plugin's resources for a job with `gpus` GPUs under the site settings
    `site` (config `resources.slurm`): the GPU or CPU partition, account, QOS, and for a GPU job
    the GPU request in the site's style (``--gpus=N`` or ``--gres=gpu:N``), the GPU constraint and
    one node, as torchrun --standalone needs every GPU of a job on its node. Settings left null
    are left to sbatch's defaults."""
    partition = site["gpu_partition"] if gpus else site["cpu_partition"]
    resources = {"slurm_partition": partition, "slurm_account": site["account"], "qos": site["qos"]}
    if gpus:
        request = {"gpu": gpus} if site["gpu_request"] == "gpus" else {"gres": f"gpu:{gpus}"}
        resources.update(request, constraint=site["gpu_constraint"], nodes=1)
    return {key: value for key, value in resources.items() if value is not None}


def slurm_options(resources: dict) -> list[str]:
    """The sbatch (or srun) options the Slurm executor plugin writes for these resources, in its
    spelling (``-p gpu``, ``--gpus=4``)."""
    options = []
    for key, option in PLUGIN_OPTIONS.items():
        if key in resources:
            value = str(resources[key])
            options += [option + value] if option.endswith("=") else [option, value]
    return options
