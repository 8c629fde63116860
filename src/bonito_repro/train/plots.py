"""The loss curve written beside each trained adapter."""
from __future__ import annotations

from pathlib import Path

from ..io import atomic_path


def plot_loss(train: list[dict], validation: list[dict], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([e["step"] for e in train], [e["loss"] for e in train], label="train")
    if validation:
        ax.plot([e["step"] for e in validation], [e["loss"] for e in validation], "o-", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
