"""Figures, drawn from the manifests the compute jobs write: restyling one (the config's `plots`
section) reruns only these small jobs, never a generation or a training.

    python -m bonito_repro plot funnel --manifest SYNTHETIC.manifest.json --params JSON --out F.png
    python -m bonito_repro plot loss --manifest ADAPTER.manifest.json --params JSON --out L.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core.config import check_params
from ..core.empty_sets import cell_note
from ..core.io import atomic_path, check_writable, parse_params, read_json, require_keys, setup_logging


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, dpi: int) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def funnel_bars(summary: dict) -> tuple[list[str], list[int], list[str]]:
    """(labels, values, colours) of the funnel's bars: generated, each reason in checking order (a
    generator kind's own screens included), clean and kept; reasons that removed rows dark,
    measured-only ones light."""
    funnel = summary["funnel"]
    reasons = [r for r in funnel if r not in ("generated", "clean")]
    labels = ["generated", *reasons, "clean", "kept"]
    values = [funnel["generated"], *(funnel[r] for r in reasons), funnel["clean"], summary["kept"]]
    colors = ["#4c72b0", *("#c44e52" if r in summary["filters_on"] else "#e8a9ab" for r in reasons),
              "#55a868", "#2d6a3e"]
    return labels, values, colors


def plot_funnel(summary: dict, path: str | Path, title: str, dpi: int) -> None:
    """A small bar chart of the funnel (the generation manifest's ``funnel``, ``kept`` and
    ``filters_on``; ``funnel_bars``)."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    labels, values, colors = funnel_bars(summary)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bars = ax.barh(labels[::-1], values[::-1], color=colors[::-1])
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.legend(handles=[Patch(color="#c44e52", label="removed"), Patch(color="#e8a9ab", label="measured only")],
              fontsize=7, loc="center right")
    ax.set_xlabel("generated tasks")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.15)
    _save(fig, path, dpi)


def plot_loss(train: list[dict], validation: list[dict], path: str | Path, title: str, dpi: int,
              no_tasks: str | None = None) -> None:
    """Training loss per optimizer step, and the validation loss where there is one (the training
    manifest's ``train_loss`` and ``validation_loss``); a skipped adaptation's figure says why
    (``no_tasks``: its generator kept no task)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if no_tasks:
        ax.text(0.5, 0.5, f"not adapted: {no_tasks}", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title(title)
        _save(fig, path, dpi)
        return
    ax.plot([e["step"] for e in train], [e["loss"] for e in train], label="train")
    if validation:
        ax.plot([e["step"] for e in validation], [e["loss"] for e in validation], "o-", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    _save(fig, path, dpi)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("funnel", "loss"))
    parser.add_argument("--manifest", type=Path, required=True, help="a generation or training manifest")
    parser.add_argument("--params", required=True, help="the config's plots section (JSON)")
    parser.add_argument("--out", type=Path, required=True, help="figure (PNG)")
    args = parser.parse_args(argv)
    setup_logging()
    check_writable(args.out)
    keys = ["dataset", "funnel", "kept", "filters_on"] if args.kind == "funnel" else ["name", "train_loss", "validation_loss"]
    what = "a generation manifest" if args.kind == "funnel" else "a training manifest"
    dpi = check_params(parse_params(args.params), "plots")["dpi"]
    manifest = require_keys(read_json(args.manifest), keys, args.manifest, what)
    if args.kind == "funnel":
        title = f"{manifest['dataset']}: generation funnel"
        if manifest.get("empty_is_result"):
            title += f" ({cell_note(manifest['funnel']['generated'])})"
        plot_funnel(manifest, args.out, title, dpi)
    else:
        plot_loss(manifest["train_loss"], manifest["validation_loss"], args.out, manifest["name"], dpi,
                  no_tasks=manifest.get("no_tasks"))
    return 0
