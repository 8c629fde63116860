"""Figures drawn from manifests alone (`python -m bonito_repro plot`), at the config's dpi."""
from __future__ import annotations

import json
import struct

import pytest

from bonito_repro.__main__ import main as bonito_repro
from bonito_repro.reporting.plot import funnel_bars

FUNNEL = {"dataset": "pubmed_qa", "kept": 3, "filters_on": ["unparsable", "empty"],
          "funnel": {"generated": 6, "unparsable": 2, "empty": 1, "exact_duplicate": 0, "near_duplicate": 0,
                     "contaminated": 1, "answer_not_in_passage": 0, "clean": 2}}
LOSS = {"name": "adapt/mistral/bonito/pubmed_qa", "validation_loss": [{"step": 2, "loss": 2.5}],
        "train_loss": [{"step": 1, "loss": 3.0, "learning_rate": 1e-3}, {"step": 2, "loss": 2.0, "learning_rate": 0}]}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # the IHDR chunk's width and height


@pytest.mark.parametrize("kind, manifest, inches", [("funnel", FUNNEL, (6, 3.2)), ("loss", LOSS, (6, 4))])
def test_a_figure_is_drawn_from_its_manifest_at_the_configured_dpi(tmp_path, kind, manifest, inches):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    for dpi in (50, 100):
        out = tmp_path / f"{dpi}.png"
        assert bonito_repro(["plot", kind, "--manifest", str(tmp_path / "manifest.json"),
                             "--params", json.dumps({"dpi": dpi}), "--out", str(out)]) == 0
        assert png_size(out.read_bytes()) == (round(inches[0] * dpi), round(inches[1] * dpi))


def test_funnel_bars_show_a_generator_kinds_own_reasons_in_checking_order():
    backtranslated = {"kept": 1, "filters_on": ["unparsable", "empty", "unrated", "below_threshold"],
                      "funnel": {"generated": 5, "unparsable": 0, "empty": 1, "unrated": 2, "below_threshold": 1,
                                 "exact_duplicate": 0, "near_duplicate": 0, "contaminated": 0, "clean": 1}}
    labels, values, colors = funnel_bars(backtranslated)
    assert labels[2:5] == ["empty", "unrated", "below_threshold"] and values[3:5] == [2, 1]
    assert colors[3] == colors[2] != colors[6]  # removed, like empty; contamination only measured
