"""Every path under ``results/``, in one place: the rules (through rules/common.smk) and the
package read it here, and nothing else spells one. Arguments may be names or Snakemake wildcards
(``"{dataset}"``); each function returns the path as a string, relative to the working directory.

    results/
      models/{model}/                       base models (prepare_model)
      unannotated/{dataset}.parquet         passages; test/{dataset}.parquet: labelled test split
      ctga/{train,validation,p3}.parquet    ctga-v1 and the P3 mix
      generators/{generator}/               a trained generator: adapter/, parse_check.json,
                                            seed/, {backward,forward}_adapter/ (backtranslation)
      p3/{model}/adapter/                   the P3 stand-in
      synthetic/{generator}/{dataset}.*     synthetic tasks, funnel, formats, card; .n{N}.*: subsets
      adapters/{target}/{source}/{dataset}/ adapted models (and .manifest.json, .loss.png, .hub/)
      eval/{target}/{source}/{dataset}.*    evaluations; .../{train_dataset}/on_{dataset}.*: transfer
      paper/                                the default run's own: tables, profile, baselines;
                                            paper/ablations/: figures (run.name null)
      runs/{run}/                           a named run's own, laid out as paper/ (run.name)
      preflight/                            the preflight's report.txt and row_counts.json (a named
                                            run's: runs/{run}/preflight/), the GPU calibration
                                            (gpu_calibration.json)
      logs/, benchmarks/                    one log and one benchmark per job
      checkpoints/, shards/                 resume state: not declared outputs, kept across retries
                                            (training checkpoints, evaluations' finished templates;
                                            generation shards)
"""
from __future__ import annotations

RESULTS = "results"
# Resume state of a job lives at the same relative path under these, not under its declared
# outputs, which Snakemake deletes before a retry.
CHECKPOINTS = f"{RESULTS}/checkpoints"
SHARDS = f"{RESULTS}/shards"


def _at(*parts: str) -> str:
    return "/".join((RESULTS, *parts))


# --- inputs of every stage


def model_dir(model: str, suffix: str = "") -> str:
    return _at("models", model + suffix)


def unannotated(dataset: str, suffix: str = ".parquet") -> str:
    return _at("unannotated", dataset + suffix)


def test_split(dataset: str, suffix: str = ".parquet") -> str:
    return _at("test", dataset + suffix)


def ctga(name: str) -> str:
    """ctga-v1's files: train.parquet, validation.parquet, p3.parquet, manifest.json,
    downloads.json, published_comparison.csv."""
    return _at("ctga", name)


# --- generators and their synthetic tasks


def generator(name: str, *parts: str) -> str:
    """A generator's folder (``adapter``, ``parse_check.json``, ``seed/...``, ``backward_adapter``)."""
    return _at("generators", name, *parts)


def p3_adapter(model: str, suffix: str = "") -> str:
    return _at("p3", model, "adapter" + suffix)


def synthetic(generator: str, dataset: str, suffix: str = ".parquet") -> str:
    return _at("synthetic", generator, dataset + suffix)


def subset(generator: str, dataset: str, size: int | str, suffix: str = ".parquet") -> str:
    """A size point's nested subset of a synthetic set (the ablations)."""
    return synthetic(generator, dataset, f".n{size}{suffix}")


# --- adaptation and evaluation


def adapter(target: str, source: str, dataset: str, suffix: str = "") -> str:
    return _at("adapters", target, source, dataset + suffix)


# an evaluation's per-example predictions, beside its scores (.json): what the main table's
# delta intervals resample
PREDICTIONS = ".predictions.parquet"


def evaluation(target: str, source: str, dataset: str, train_dataset: str | None = None,
               suffix: str = ".json") -> str:
    """An evaluation on `dataset` of the adapter trained there, or, for a transfer evaluation, of
    the one trained on `train_dataset`."""
    if train_dataset is None or train_dataset == dataset:
        return _at("eval", target, source, dataset + suffix)
    return _at("eval", target, source, train_dataset, f"on_{dataset}{suffix}")


# --- reports: what is a run's own (tables, profile, baselines, figures, preflight). Everything
# above is keyed by model, generator, target, source or dataset and shared by every run in the same
# results/, so a second run (a corpus, another selection) reuses the finished jobs.


def run_dir(run: str | None = None) -> str:
    """A run's own folder: ``paper`` for the default run (config ``run.name`` null: the demo's and
    the paper's), ``runs/{run}`` for a named one."""
    return _at("paper") if run is None else _at("runs", run)


def paper(name: str, run: str | None = None) -> str:
    """Tables and profiles of the run: main_table.md, eval_scores.csv, baselines.md, ..."""
    return f"{run_dir(run)}/{name}"


def run_job(name: str, run: str | None = None) -> str:
    """The log and benchmark name of a run's own job (``paper/main_table``,
    ``runs/{run}/main_table``), so that two runs never share a log."""
    return paper(name, run)[len(RESULTS) + 1:]


def preflight(name: str, run: str | None = None) -> str:
    """What the preflight writes before a run: report.txt, and row_counts.json (the row counts it
    read on the Hub, which the cost model reads), a named run's in its own folder; and
    gpu_calibration.json, the throughputs ``make gpu-check`` measured
    (bonito_repro.cluster.gpu_check), which the cost model reads too."""
    return _at("preflight", name) if run is None else paper(f"preflight/{name}", run)


def ablation_figure(figure: str, ext: str, run: str | None = None) -> str:
    return paper(f"ablations/{figure}.{ext}", run)


# --- what every job keeps beside its outputs


def log(job: str) -> str:
    """A job's log, named like its benchmark: ``adapt/{target}/{source}/{dataset}``."""
    return _at("logs", job + ".log")


def benchmark(job: str) -> str:
    return _at("benchmarks", job + ".tsv")


def checkpoints(output: str) -> str:
    """The resume checkpoints of a training job whose output is `output` (a path under results/)."""
    return CHECKPOINTS + output[len(RESULTS):]


def evaluation_progress(target: str, source: str, dataset: str, train_dataset: str | None = None) -> str:
    """The finished templates of an evaluation job, which its rerun after a kill reuses."""
    return checkpoints(evaluation(target, source, dataset, train_dataset, ".templates"))


def shards(generator: str, dataset: str) -> str:
    """The finished shards of a generation job, skipped by its rerun after a kill."""
    return f"{SHARDS}/{generator}/{dataset}"


def beside(adapter: str, suffix: str) -> str:
    """A file beside a trained adapter given by its path under results/ (``adapters/t/s/d``,
    ``generators/g/adapter``): its manifest and loss curve."""
    return _at(adapter + suffix)
