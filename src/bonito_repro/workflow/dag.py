"""The DAG's glue: what the rule files read beside the config. One ``Dag`` is built from the
resolved config in rules/common.smk; the rules read its names (what runs), its input and params
functions (each takes a job's wildcards) and the final outputs of each target. Paths come from
bonito_repro.core.layout, generator kinds and task types from their registries; nothing here
knows Snakemake beyond the wildcards object (``w.dataset``, ``w.get(...)``, ``w.items()``).

Params are the hyperparameters a job's command reads, as JSON, so that a changed value reruns
exactly the jobs it affects (Snakemake's params trigger); each params function leaves out what
its jobs do not read. Under a Hub lock (bonito_repro.core.hub_lock) the origins and model specs the
download jobs get carry their locked commit (``hub.sha``): a refreshed lock reruns exactly the
downloads whose commit changed.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from ..cluster.cost import Rows, rule_retries
from ..core import layout, slurm
from ..core.config import EVAL_DECODING_KEYS, evaluated
from ..core.generators import generators_of, passage_cap
from ..core.hub_lock import HubLock
from ..core.origins import embedded_path
from ..core.sources import TAPT, ZERO_SHOT, chained_generator, parse_size_source
from ..core.tasks import GREEDY, RANK, scoring
from ..reporting.data_caption import data_caption
from .ablations import ablation_cells, ablation_sources, figures_of

ABLATIONS = ("generators", "size", "domain")
# stages whose jobs may run on GPUs; downloads, the data rules and ctga request none
GPU_STAGES = ("train_bonito", "generate", "adapt", "evaluate")
# everything a generation job writes for one (generator, dataset)
SYNTHETIC_SUFFIXES = {"rows": ".parquet", "manifest": ".manifest.json", "records": ".funnel.parquet",
                      "formats": ".formats"}
EVAL_SUFFIXES = {"scores": ".json", "predictions": layout.PREDICTIONS, "manifest": ".manifest.json"}
MAIN_TABLE_NAMES = ("main_table", "main_table_deltas", "published_comparison")


def as_json(value: Any) -> str:
    """Hyperparameters reach a command as one JSON string, so a changed value reruns its jobs."""
    return json.dumps(value, sort_keys=True)


def choice(names) -> str:
    """A wildcard constraint that matches exactly these names (nothing, for none)."""
    return "|".join(map(re.escape, names)) if names else "(?!)"


def test_flag(w, input) -> str:
    """Params function: the funnel's contamination check against the dataset's test split, if any."""
    return f"--test {input.test}" if input.test else ""


def local_files(origin: dict, kind: str) -> list[str]:
    """Local files an origin reads (embedded demo rows or the user's own), so that editing one
    reruns its job."""
    if "embedded" in origin:
        return [str(embedded_path(kind, origin["embedded"]))]
    if "files" in origin:
        return [origin["files"]] if isinstance(origin["files"], str) else list(origin["files"])
    return []


# an endpoint entry's keys its client does not read: sampling and the cap go in `hp`, the price
# only to the cost model
ENDPOINT_KEYS_NOT_SENT = ("sampling", "max_passages", "price_per_1000_tokens")


class Dag:
    """What runs at this config, and how each job finds its inputs."""

    def __init__(self, config: dict, hub_lock: HubLock | None = None, rows: Rows | None = None):
        self.config = config
        self.hub_lock = hub_lock
        self.rows = rows or Rows()  # the preflight's row counts, which size the long rules' retries
        self.rule_retries: dict[str, int] = {}  # what `retries` gave each rule that asked
        # a named run's own files go to their own folder (layout.run_dir); every job keyed by model,
        # generator, target, source or dataset stays shared, so a second run reuses finished ones
        self.run_name = config["run"]["name"]
        self.models = sorted(config["models"])
        self.targets = sorted(config["targets"])
        self.datasets = sorted(config["datasets"])
        # the datasets with a labelled test set: the others end at their adapted models
        self.evaluated = [d for d in self.datasets if evaluated(config["datasets"][d])]
        self.generators = sorted(config["generators"])
        self.sources = list(config["run"]["sources"])
        # size points ({generator}.n{N}) and chains (tapt+{generator}) of the ablations
        self.ablation_sources = ablation_sources(config)
        self.rank_datasets = [d for d in self.evaluated if self._scoring(d) == RANK]
        self.generation_datasets = [d for d in self.evaluated if self._scoring(d) == GREEDY]
        self.p3_models = sorted({config["targets"][t]["model"] for t in self.targets
                                 if config["targets"][t].get("init_adapter", {}).get("train_on") == "p3"})
        self.ablation_figures = figures_of(config)
        self.cells = {figure: ablation_cells(config, figure) for figure in self.ablation_figures}

    def _scoring(self, dataset: str) -> str | None:
        return scoring(self.config["datasets"][dataset]["task_type"])

    def generators_of(self, **filters) -> list[str]:
        """The generators a rule makes sets with (core.generators.generators_of's filters)."""
        return generators_of(self.config, **filters)

    # --- resources (config `resources`; profiles carry only executor and site settings)

    def threads(self, stage: str) -> int:
        return self.config["resources"][stage]["threads"]

    def resources(self, stage: str) -> dict:
        """Memory, runtime (minutes) and where the job runs on Slurm: partition, account and QOS of
        the site settings, and for a GPU stage's job with GPUs their request on one node
        (``core.slurm.job_resources``); a GPU stage's job also asks for the SIGTERM Slurm sends
        `resources.signal_lead_seconds` before the time limit, to save its progress (sbatch
        --signal through the plugin's `slurm_extra`; not `B:`, which would signal only the batch
        shell: the plugin runs the command in a job step, `srun`, whose processes get the signal):
        `resources: **dag.resources(s)`."""
        values = self.config["resources"][stage]
        gpus = values["gpus"] if stage in GPU_STAGES else 0
        site = slurm.job_resources(self.config["resources"]["slurm"], gpus)
        if stage in GPU_STAGES:
            site["slurm_extra"] = f"--signal=TERM@{self.config['resources']['signal_lead_seconds']}"
        return {**site, "mem_mb": values["mem_mb"], "runtime": values["runtime"]}

    @property
    def downloads_local(self) -> bool:
        """Whether the rules that download or convert (models, datasets, ctga's sources, seeds,
        released sets) run on the login node, as local rules, rather than as jobs on the CPU
        partition (`resources.slurm.downloads_as_jobs`, for clusters whose compute nodes reach the Hub)."""
        return not self.config["resources"]["slurm"]["downloads_as_jobs"]

    def retries(self, rule: str) -> int:
        """Retries of a rule whose jobs resume after a kill or a time limit (training from its
        checkpoints, generation from its shards, evaluation from its finished templates): the
        attempts the cost model projects for the longest of its jobs at this config and the
        preflight's row counts, plus one (cluster.cost.rule_retries)."""
        self.rule_retries[rule] = rule_retries(self.config, rule, self.job_wildcards(rule), self.rows)
        return self.rule_retries[rule]

    def job_wildcards(self, rule: str) -> list[dict]:
        """The wildcards of the jobs of a long GPU rule that set its cost: every generator or model
        it trains, every dataset it generates for or evaluates, every (source, dataset) a target
        adapts on (the cost depends on no target: one stands for all)."""
        datasets = {"evaluate": self.rank_datasets, "evaluate_generation": self.generation_datasets}
        if rule in ("train_bonito", "train_backtranslation"):
            return [{"generator": g} for g in self.generators_of(training_rule=rule)]
        if rule == "train_p3":
            return [{"model": m} for m in self.p3_models]
        if rule in ("generate", "backtranslate"):
            return [{"generator": g, "dataset": d} for g in self.generators_of(rule=rule) for d in self.datasets]
        if rule == "adapt":
            return [{"target": t, "source": s, "dataset": d} for t in self.targets[:1]
                    for s in [*self.sources, *self.ablation_sources] for d in self.datasets]
        return [{"dataset": d} for d in datasets[rule]]

    def train_command(self, section: str) -> str:
        """The training CLI's module arguments, under torchrun when the config asks for more than
        one process."""
        processes = self.config[section]["processes"]
        if processes == 1:
            return "-m bonito_repro train"
        return f"-m torch.distributed.run --standalone --nproc_per_node {processes} -m bonito_repro train"

    def training_params(self, section: str, adapter: str) -> dict:
        """Params of a training rule: its section's values, the command (torchrun or not), the
        device and where the job's checkpoints live (`adapter`: its output folder, with wildcards)."""
        return dict(hp=as_json(self.config[section]), train=self.train_command(section), device=self.config["device"],
                    checkpoints=lambda w: layout.checkpoints(adapter.format(**dict(w.items()))))

    # --- models and data

    def model_of(self, section: str, key: str) -> Callable:
        """Input function: the model directory that config names at `section.{wildcard}.key`
        (``targets``/``target``/``model``, ``generators``/``generator``/``base``)."""
        wildcard = section[:-1]
        return lambda w: layout.model_dir(self.config[section][w[wildcard]][key])

    def init_adapter_dir(self, target: str) -> str | None:
        """The adapter a target starts from (published P3 adapter, or the one trained here)."""
        spec = self.config["targets"][target].get("init_adapter", {})
        if "model" in spec:
            return layout.model_dir(spec["model"])
        if spec.get("train_on") == "p3":
            return layout.p3_adapter(self.config["targets"][target]["model"])
        return None

    def _pinned(self, origin: dict, where: str) -> dict:
        """A dataset origin at its locked commit (under a Hub lock)."""
        return self.hub_lock.pin_dataset_origin(origin, where) if self.hub_lock else origin

    def model_spec(self, model: str) -> dict:
        """A model's spec as prepare_model downloads it: at its locked commit under a Hub lock."""
        spec = self.config["models"][model]
        if self.hub_lock and "hub" in spec:
            return {**spec, "hub": self.hub_lock.pin(spec["hub"], "model", f"models.{model}.hub")}
        return spec

    def data_origin(self, dataset: str, kind: str) -> dict:
        spec = self.config["datasets"][dataset]
        return self._pinned(spec[kind], f"{spec['file']}: {kind}")

    def seed_origin(self, generator: str) -> dict:
        """A backtranslation generator's seed conversations' origin."""
        return self._pinned(self.config["generators"][generator]["seed"], f"generators.{generator}.seed")

    def test_input(self, dataset: str) -> str | list:
        """The test split the funnel checks a dataset's tasks against for contamination, if any."""
        return layout.test_split(dataset) if dataset in self.evaluated else []

    # --- ctga

    def ctga_origins(self) -> dict:
        """The origins the build reads: the published set's (used or compared) and the P3 datasets'."""
        ctga = self.config["ctga"]
        origins = {"published": ctga["published"]} if ctga["use_published"] or self.ctga_compares() else {}
        if not ctga["use_published"]:
            origins.update(ctga["p3_datasets"])
        return origins

    def ctga_hp(self) -> dict:
        """The `ctga` section as its jobs read it: the origins the build reads at their locked
        commits (under a Hub lock)."""
        ctga = dict(self.config["ctga"], p3_datasets=dict(self.config["ctga"]["p3_datasets"]))
        for name, origin in self.ctga_origins().items():
            if name == "published":
                ctga["published"] = self._pinned(origin, "ctga.published")
            else:
                ctga["p3_datasets"][name] = self._pinned(origin, f"ctga.p3_datasets.{name}")
        return ctga

    def ctga_compares(self) -> bool:
        """Whether the build is compared with the published set (a paper-scale check)."""
        return self.config["ctga"].get("compare_published", False) and not self.config["ctga"]["use_published"]

    def ctga_downloads(self) -> list[str]:
        return [layout.ctga("downloads.json")] if any("hub" in o for o in self.ctga_origins().values()) else []

    def ctga_params(self) -> dict:
        return dict(hp=lambda w: as_json(self.ctga_hp()),
                    comparison=lambda w, output: f"--comparison {output.comparison}" if self.ctga_compares() else "",
                    downloads=" ".join(f"--downloads {path}" for path in self.ctga_downloads()))

    # --- generation

    def synthetic_outputs(self, generator: str = "{generator}", dataset: str = "{dataset}") -> dict:
        return {name: layout.synthetic(generator, dataset, suffix) for name, suffix in SYNTHETIC_SUFFIXES.items()}

    def generator_inputs(self, w) -> dict:
        spec = self.config["generators"][w.generator]
        if "model" in spec:
            return {"model": layout.model_dir(spec["model"])}
        return {"model": layout.model_dir(spec["base"]), "adapter": layout.generator(w.generator, "adapter")}

    def generation_params(self, generator: str) -> dict:
        """The `generation` section with the generator's own `sampling` over it (prompted kinds),
        and its passage cap (an endpoint's `max_passages`)."""
        spec = self.config["generators"][generator]
        generation = {**self.config["generation"], **spec.get("sampling", {})}
        return {**generation, "max_passages": passage_cap(generation["max_passages"], spec)}

    def published_origin(self, generator: str, dataset: str) -> dict:
        """The generator's origin with `{dataset}` filled in wherever it appears (at its locked
        commit under a Hub lock)."""
        origin = json.dumps(self.config["generators"][generator]["origin"])
        return self._pinned(json.loads(origin.replace("{dataset}", dataset)), f"generators.{generator}.origin")

    def generate_params(self) -> dict:
        """Params of the generate rule (generator kinds bonito and prompted)."""
        return dict(
            hp=lambda w: as_json(self.generation_params(w.generator)),
            kind=lambda w: self.config["generators"][w.generator]["kind"],
            test=test_flag,
            task_type=lambda w: self.config["datasets"][w.dataset]["task_type"],
            adapter=lambda w, input: f"--adapter {input.adapter}" if "adapter" in input.keys() else "",
            shards=lambda w: layout.shards(w.generator, w.dataset),
            device=self.config["device"],
        )

    def endpoint_params(self) -> dict:
        """Params of the endpoint_tasks rule: the endpoint's entry without its sampling and passage
        cap, which `hp` carries merged over `generation`, and without its price, which only the
        cost model reads (a new price reruns nothing)."""
        generators = self.config["generators"]
        return dict(
            hp=lambda w: as_json(self.generation_params(w.generator)),
            endpoint=lambda w: as_json({k: v for k, v in generators[w.generator].items()
                                        if k not in ENDPOINT_KEYS_NOT_SENT}),
            test=test_flag,
            task_type=lambda w: self.config["datasets"][w.dataset]["task_type"],
            shards=lambda w: layout.shards(w.generator, w.dataset),
        )

    def backtranslate_params(self) -> dict:
        generators = self.config["generators"]
        return dict(
            hp=as_json(self.config["generation"]),
            test=test_flag,
            device=self.config["device"],
            curation=lambda w: as_json({k: generators[w.generator][k]
                                        for k in ("threshold", "rating", "rating_max_new_tokens")}),
            task_type=lambda w: self.config["datasets"][w.dataset]["task_type"],
            shards=lambda w: layout.shards(w.generator, w.dataset),
        )

    # --- adaptation

    def training_rows(self, source: str, dataset: str) -> str:
        """What an adaptation of `source` trains on: unannotated text (tapt), a size point's subset
        of synthetic tasks, or a generator's synthetic tasks (also after TAPT, for a chain)."""
        if source == TAPT:
            return layout.unannotated(dataset)
        size = parse_size_source(source)
        if size:
            return layout.subset(size[0], dataset, size[1])
        return layout.synthetic(chained_generator(source) or source, dataset)

    def start_adapter_dir(self, target: str, source: str, dataset: str) -> str | None:
        """The adapter an adaptation starts from: TAPT's for a chain, else the target's own, or None."""
        if chained_generator(source):
            return layout.adapter(target, TAPT, dataset)
        return self.init_adapter_dir(target)

    def adaptation_params(self, source: str) -> dict:
        """The adaptation values a job uses: TAPT ignores the pair lengths, pairs the block size, so
        that changing one reruns only the jobs it affects."""
        unused = ("max_input_length", "max_output_length") if source == TAPT else ("tapt_block_size",)
        return {k: v for k, v in self.config["adaptation"].items() if k not in unused}

    def subset_input(self, w) -> str | list:
        """A size point's subset manifest (whose `alias_of_full_set` the job reads), else nothing."""
        size = parse_size_source(w.source)
        dataset = w.get("train_dataset", w.dataset)
        return layout.subset(size[0], dataset, size[1], ".manifest.json") if size else []

    def unless_alias(self, w, outputs: list[str], python: str) -> str:
        """Command prefix of a size point's job: if its subset is the whole set, copy the full-set
        job's outputs (`outputs`: paths with `{source}` and the job's other wildcards) instead of
        running (bonito_repro.workflow.ablations.unless_alias)."""
        size = parse_size_source(w.source)
        if not size:
            return ""
        fill = lambda path, source: path.format(**{**dict(w.items()), "source": source})  # noqa: E731
        pairs = " ".join(f"--copy {fill(path, size[0])} {fill(path, w.source)}" for path in outputs)
        return f"{python} -m bonito_repro ablations unless-alias --subset {self.subset_input(w)} {pairs} -- "

    def adapt_inputs(self, w) -> dict:
        size = parse_size_source(w.source)
        start = self.start_adapter_dir(w.target, w.source, w.dataset)
        return {"base": layout.model_dir(self.config["targets"][w.target]["model"]),
                "init_adapter": start or [], "rows": self.training_rows(w.source, w.dataset),
                "subset": self.subset_input(w), "full": layout.adapter(w.target, size[0], w.dataset) if size else []}

    def adapt_params(self, python: str) -> dict:
        """Params of the adapt rule (the command's flags, resolved per job)."""
        def start(w) -> str:
            adapter = self.start_adapter_dir(w.target, w.source, w.dataset)
            return f"--init-adapter {adapter}" if adapter else ""

        def alias(w) -> str:
            stem = layout.adapter(w.target, "{source}", w.dataset)
            return self.unless_alias(w, [stem, stem + ".manifest.json"], python)

        return dict(
            hp=lambda w: as_json(self.adaptation_params(w.source)),
            mode=lambda w: "tapt" if w.source == TAPT else "pairs",
            wrapper=lambda w: "none" if w.source == TAPT else self.config["targets"][w.target]["wrapper"]["adapted"],
            init_adapter=start,
            alias=alias,
            train=self.train_command("adaptation"),
            device=self.config["device"],
            checkpoints=lambda w: layout.checkpoints(layout.adapter(w.target, w.source, w.dataset)),
        )

    # --- evaluation

    def eval_outputs(self, transfer: bool = False) -> dict:
        train = "{train_dataset}" if transfer else None
        return {name: layout.evaluation("{target}", "{source}", "{dataset}", train, suffix)
                for name, suffix in EVAL_SUFFIXES.items()}

    def eval_stem(self, w) -> str:
        """An evaluation's outputs without their suffix, `{source}` left to fill."""
        return layout.evaluation(w.target, "{source}", w.dataset, w.get("train_dataset"), "")

    def eval_inputs(self, w) -> dict:
        """The target's base model, the test split and the adapter evaluated with them, if any: the
        target's starting adapter for zero_shot, else the one adapt trained on the source (with the
        train dataset's data, for a transfer evaluation). A size point also reads its subset manifest
        and the full set's evaluation, which it copies if the subset is the whole set."""
        if w.source == ZERO_SHOT:
            adapter = self.init_adapter_dir(w.target)
        else:
            adapter = layout.adapter(w.target, w.source, w.get("train_dataset", w.dataset))
        size = parse_size_source(w.source)
        alias = {"subset": self.subset_input(w), "full": self.eval_stem(w).format(source=size[0]) + ".json"} if size else {}
        return {"model": layout.model_dir(self.config["targets"][w.target]["model"]), "test": layout.test_split(w.dataset),
                **({"adapter": adapter} if adapter else {}), **alias}

    def eval_params(self, generation: bool, python: str) -> dict:
        """Params of an evaluation rule: rank jobs get no decoding values (changing those reruns only
        the greedy-decoding jobs), and a job gets its dataset's passage fields only under
        `evaluation.truncation: passage` (changing them reruns that dataset's evaluations only)."""
        values = dict(self.config["evaluation"])
        if not generation:
            values = {k: v for k, v in values.items() if k not in EVAL_DECODING_KEYS}
        shortens = values["truncation"] == "passage"
        datasets, targets = self.config["datasets"], self.config["targets"]
        return dict(
            hp=as_json(values),
            device=self.config["device"],
            wrapper=lambda w: targets[w.target]["wrapper"][{ZERO_SHOT: "zero_shot", TAPT: "tapt"}.get(w.source, "adapted")],
            task_type=lambda w: datasets[w.dataset]["task_type"],
            labels=lambda w: as_json(datasets[w.dataset].get("labels")),
            templates=lambda w: as_json(datasets[w.dataset]["templates"]),
            fields=lambda w: as_json(datasets[w.dataset]["test_fields"]),
            passage=lambda w: as_json(datasets[w.dataset]["passage"] if shortens else None),
            adapter=lambda w, input: f"--adapter {input.adapter}" if "adapter" in input.keys() else "",
            alias=lambda w: self.unless_alias(w, [self.eval_stem(w) + s for s in EVAL_SUFFIXES.values()], python),
            progress=lambda w: layout.evaluation_progress(w.target, w.source, w.dataset, w.get("train_dataset")),
        )

    def eval_results(self, suffix: str = ".json") -> list[str]:
        """Every evaluation of the main grid, which the eval_table collects (``suffix``: another
        of its outputs, such as the predictions the main table's delta intervals read)."""
        return [layout.evaluation(t, s, d, suffix=suffix) for t in self.targets for s in [ZERO_SHOT, *self.sources]
                for d in self.evaluated]

    # --- reports: the run's own files

    def run_file(self, name: str) -> str:
        """A file of this run's own folder (main_table.md, eval_scores.csv, ...)."""
        return layout.paper(name, self.run_name)

    def run_job(self, name: str) -> str:
        """The log and benchmark name of this run's own job (main_table, ablations/{figure}, ...)."""
        return layout.run_job(name, self.run_name)

    def main_tables(self) -> list[str]:
        return [self.run_file(f"{name}.{ext}") for name in MAIN_TABLE_NAMES for ext in ("csv", "md", "tex")]

    def reads_hub(self) -> bool:
        """Whether the main grid's models or datasets come from the Hub."""
        return (any("hub" in spec for spec in self.config["models"].values())
                or any("hub" in spec.get(kind, {}) for spec in self.config["datasets"].values()
                       for kind in ("unannotated", "test")))

    def data_caption(self, datasets: list[str], kind: str = "test") -> str:
        """The caption line naming the data a table of ``datasets`` is on (demo, real or the paper's)."""
        return data_caption({d: self.config["datasets"][d] for d in datasets}, self.config["scale"], kind)

    def main_table_params(self) -> dict:
        """What the main table reads of the config, and (for a run that reads the Hub) its Hub
        lock, which the caption names (null: none)."""
        config = self.config
        lock = {"hub_lock": self.hub_lock.summary() if self.hub_lock else None} if self.reads_hub() else {}
        return {**{key: config[key] for key in ("scale", "models", "targets", "tables")},
                "evaluation": {"bootstrap": config["evaluation"]["bootstrap"]},
                # not the run's name, which only places the table: naming the demo's run reruns nothing
                "run": {**{k: v for k, v in config["run"].items() if k != "name"},
                        "datasets": [d for d in config["run"]["datasets"] if d in self.evaluated]},
                "datasets": {d: {"title": config["datasets"][d]["title"]} for d in self.evaluated},
                "data": self.data_caption(self.evaluated), **lock}

    def baselines_params(self) -> dict:
        config = self.config
        return {"tables": config["tables"], "data": self.data_caption(self.evaluated),
                "evaluation": {k: config["evaluation"][k] for k in ("max_examples", "seed", "bootstrap")},
                # a dataset's passage only where a random span is drawn from it (extractive QA)
                "datasets": {d: {k: spec.get(k) for k in ("title", "task_type", "labels", "test_fields")}
                             | ({"passage": spec["passage"]} if d in self.generation_datasets else {})
                             for d, spec in config["datasets"].items() if d in self.evaluated}}

    def baselines_inputs(self) -> list[str]:
        return [layout.test_split(d) for d in self.config["run"]["datasets"] if d in self.evaluated]

    def synthetic_sets(self) -> list[tuple[str, str]]:
        """(generator, dataset) of every synthetic set the run adapts on."""
        return [(g, d) for g in self.sources if g != TAPT for d in self.datasets]

    def trained_adapters(self) -> list[str]:
        """Every adapter the run trains, under results/ (its manifest and loss curve lie beside it)."""
        trained = self.generators_of(training_rule="train_bonito")
        backtranslation = self.generators_of(training_rule="train_backtranslation")
        return [
            *(layout.generator(g, "adapter") for g in trained if g in self.sources),
            *(layout.generator(g, f"{d}_adapter") for g in backtranslation if g in self.sources
              for d in ("backward", "forward")),
            *(layout.p3_adapter(m) for m in self.p3_models),
            *(layout.adapter(t, s, d) for t in self.targets for s in self.sources for d in self.datasets),
        ]

    def adapter_pattern(self) -> str:
        """The wildcard constraint of a trained adapter's path under results/ (loss_curve)."""
        return "|".join([
            f"generators/(?:{choice(self.generators_of(training_rule='train_bonito'))})/adapter",
            f"generators/(?:{choice(self.generators_of(training_rule='train_backtranslation'))})/(?:backward|forward)_adapter",
            f"p3/(?:{choice(self.p3_models)})/adapter",
            f"adapters/(?:{choice(self.targets)})/(?:{choice([TAPT, *self.generators])})/(?:{choice(self.datasets)})",
        ])

    def figures(self) -> list[str]:
        return [*(layout.synthetic(g, d, ".funnel.png") for g, d in self.synthetic_sets()),
                *(adapter + ".loss.png" for adapter in self.trained_adapters())]

    def parse_checks(self) -> list[str]:
        return [layout.generator(g, "parse_check.json") for g in self.generators_of(training_rule="train_bonito")
                if g in self.sources]

    def quality_profile(self) -> list[str]:
        return [self.run_file(f"quality_profile.{ext}") for ext in ("csv", "md")] if self.synthetic_sets() else []

    def quality_profile_params(self) -> dict:
        return {"cells": [[g, d, self.config["datasets"][d]["task_type"]] for g, d in self.synthetic_sets()],
                "decimals": self.config["tables"]["decimals"],
                "data": self.data_caption(list(dict.fromkeys(d for _, d in self.synthetic_sets())), "unannotated")}

    def cards(self) -> list[str]:
        return [*(layout.synthetic(g, d, ".hub") for g, d in self.synthetic_sets()),
                *(layout.adapter(t, s, d, ".hub") for t in self.targets for s in self.sources for d in self.datasets)]

    def _dataset_info(self, dataset: str) -> dict:
        spec = self.config["datasets"][dataset]
        origin = spec["unannotated"]
        where = {"hub": lambda: f"Hub dataset {origin['hub']['id']} ({origin['hub'].get('config')})",
                 "embedded": lambda: f"the project's embedded demo rows `{origin['embedded']}`",
                 "files": lambda: f"the files {origin['files']}"}[next(iter(origin))]()
        # a dataset file of the user's own names its license (the corpus command asks for it); the
        # embedded demo rows are the project's own text, under its license; the paper's datasets keep
        # their own terms
        license = spec.get("license") or ("apache-2.0" if "embedded" in origin else "other")
        return {"dataset": dataset, "title": spec["title"], "task_type": spec["task_type"], "origin": where,
                "license": license, "language": spec.get("language"), "scale": self.config["scale"],
                "evaluated": dataset in self.evaluated}

    def dataset_card_info(self, generator: str, dataset: str) -> dict:
        return {**self._dataset_info(dataset), "generator": generator,
                "generator_spec": self.config["generators"][generator], "generation": self.config["generation"]}

    def model_card_info(self, target: str, source: str, dataset: str) -> dict:
        spec = self.config["targets"][target]
        model = self.config["models"][spec["model"]]
        return {**self._dataset_info(dataset), "target": target, "source": source,
                "base_model": model.get("hub", {}).get("id", spec["model"]), "base_model_on_hub": "hub" in model,
                "init_adapter": self.init_adapter_dir(target), "training": self.adaptation_params(source)}

    # --- ablations

    def ablation_figure_params(self) -> dict:
        config = self.config
        return {**config["plots"], **config["tables"], "data": self.data_caption(self.evaluated),
                **{k: config["adaptation"][k] for k in ("one_epoch_below", "max_steps")},
                "matched_n": config["ablations"]["generators"]["matched_n"],
                "common_n": config["ablations"]["domain"]["common_n"]}

    def ablation_outputs(self, ablation: str) -> list[str]:
        """An ablation's figures and tables, and the cards of every synthetic set, subset and adapter it makes."""
        return [*(layout.ablation_figure(f, ext, self.run_name) for f in figures_of(self.config, ablation) for ext in ("png", "csv", "md")),
                *self.ablation_cards(ablation)]

    def ablation_cards(self, ablation: str) -> list[str]:
        """The card folders of what an ablation's cells train on and train: the generators' full
        sets, the size points' subsets and every adapter (the main grid's among them)."""
        cards = []
        for cell in (c for figure in figures_of(self.config, ablation) for c in self.cells[figure]):
            if cell.source == ZERO_SHOT:
                continue
            cards.append(layout.adapter(cell.target, cell.source, cell.train_dataset, ".hub"))
            size = parse_size_source(cell.source)
            generator = size[0] if size else chained_generator(cell.source) or (None if cell.source == TAPT else cell.source)
            if generator:
                cards.append(layout.synthetic(generator, cell.train_dataset, ".hub"))
            if size:
                cards.append(layout.subset(size[0], cell.train_dataset, size[1], ".hub"))
        return list(dict.fromkeys(cards))

    def card_evaluation(self, target: str, source: str, dataset: str) -> str | list:
        """The in-domain evaluation an adapter's card reports: the main grid's, or an ablation
        cell's; none where the dataset has no test set or no requested job evaluates the adapter on
        it (a card asks for no evaluation of its own)."""
        in_domain = dataset in self.evaluated and (
            (source in [TAPT, *self.sources] and target in self.targets) or any(
                (c.target, c.source, c.train_dataset, c.test_dataset) == (target, source, dataset, dataset)
                for cells in self.cells.values() for c in cells))
        return layout.evaluation(target, source, dataset) if in_domain else []

    # --- the targets

    def final_outputs(self) -> dict[str, list[str]]:
        """What each target of the Snakefile requests. `all` (the default): the paper's tables beside
        the no-model baselines (where a dataset has a test set), every figure, the trained
        generators' parse checks, the generators' quality profile and the cards of every synthetic
        set and adapter; `ablation_*`: the figures and tables of one ablation."""
        tables = self.main_tables() + [self.run_file(f"baselines.{ext}") for ext in ("csv", "md")] if self.evaluated else []
        outputs = {"all": [*tables, *self.figures(), *self.parse_checks(), *self.quality_profile(), *self.cards()]}
        outputs.update({f"ablation_{a}": self.ablation_outputs(a) for a in ABLATIONS})
        return outputs


def loss_curve_section(adapter: str) -> tuple[str, str]:
    """(report subcategory, job label) of a loss curve, from its adapter's path under results/."""
    kind, *names = adapter.split("/")
    if kind == "adapters":
        return "adaptation", " / ".join(names)
    # generators/G/adapter (Bonito) or generators/G/backward_adapter (backtranslation)
    label = names[0] if names[1:] == ["adapter"] else " / ".join(names)
    return {"generators": "generators", "p3": "P3 stand-in"}[kind], label
