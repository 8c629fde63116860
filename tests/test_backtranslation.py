"""Instruction backtranslation as a generator: the Guanaco first-exchange parser with its drop
counts, the rating parser on good and malformed ratings, the threshold, the funnel's screens, a
killed generation that resumes from its shards, and the seed stage and training reused end to end."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bonito_repro.__main__ import main as bonito_repro
from bonito_repro.core.config import load_scale
from bonito_repro.generate.backtranslation import (BELOW_THRESHOLD, CURATION_PROMPT, UNRATED, curation_prompt,
                                                   curation_screens, first_turns, parse_rating,
                                                   run_backtranslation, score_counts, seed_pairs)
from bonito_repro.generate.funnel import funnel_counts, run_funnel
from bonito_repro.core.prompts import BACKTRANSLATION_WRAPPER, wrap
from bonito_repro.core.origins import load_origin
from conftest import REPO

PASSAGES = ["The heart pumps blood through the body.", "Rain falls when clouds get heavy.",
            "Bees make honey from flowers.", "Owls hunt at night."]


def generation(**changes) -> dict:
    return {**load_scale("paper", REPO)["generation"], **changes}


def fake_embed(texts):
    """Distinct unit vectors per distinct text: no near duplicates, no cosine contamination."""
    vectors = np.zeros((len(texts), 64), np.float32)
    for row, text in enumerate(texts):
        vectors[row, hash(text) % 64] = 1.0
    return vectors


def test_guanaco_first_exchange_and_what_is_left_out():
    rows = [
        "### Human: What is rain?### Assistant: Water falling from clouds.",
        "### Human: Hi there ### Assistant: Hello!### Human: How are you?### Assistant: Fine.",
        "### Assistant: I speak first.### Human: odd",
        "### Human: Anyone here?",
        "### Human: ### Assistant: An answer to nothing.",
        "### Human: A question?### Assistant:   ",
        "Some preamble ### Human: q### Assistant: a",
        None,
    ]
    assert first_turns(rows[1]) == ("Hi there", "Hello!")
    pairs, drops, counts = seed_pairs(rows)
    assert pairs == [("What is rain?", "Water falling from clouds."), ("Hi there", "Hello!")]
    assert drops == {"no_first_human_turn": 2, "no_assistant_reply": 1, "empty_instruction": 1,
                     "empty_response": 1, "not_text": 1}
    assert counts == {"rows_in": 8, "pairs": 2, "later_turns_left_out": 1}
    assert counts["rows_in"] == counts["pairs"] + sum(drops.values())


@pytest.mark.parametrize("text, score", [
    ("The answer is complete and helpful.\nScore: 5", 5),
    ("Reasoning: off-topic.\nscore: 1", 1),
    ("Score:4", 4),
    ("First I thought Score: 2, but on reflection\nScore: 3", 3),  # the last line's score
    ("Well written. Score: 7", None),   # not on the 5-point scale
    ("Score: 4.5", None),               # not a point of the scale
    ("Score: 0", None),
    ("A fine answer, I would give it five.", None),
    ("", None),
])
def test_rating_parser(text, score):
    assert parse_rating(text) == score


def test_threshold_screens_and_score_counts():
    scores, rated = [5, 4, None, 3, None, 1], [True, True, True, True, False, True]
    strict = curation_screens(scores, rated, 5)
    assert strict == {UNRATED: [False, False, True, False, False, False],
                      BELOW_THRESHOLD: [False, True, False, True, False, True]}
    assert curation_screens(scores, rated, 3)[BELOW_THRESHOLD] == [False, False, False, False, False, True]
    counts = score_counts(scores, rated, 4)
    assert counts["by_score"] == {"1": 1, "2": 0, "3": 1, "4": 1, "5": 1, "unparsable": 1}
    assert counts["rated"] == 5 and counts["at_or_above_threshold"] == 2


def test_curation_prompt_is_the_methods():
    assert "5-point scale" in CURATION_PROMPT and all(f"\n{n}: " in CURATION_PROMPT for n in range(1, 6))
    assert 'write "Score: <rating>" on the last line.' in CURATION_PROMPT
    prompt = curation_prompt("Describe owls.", "Owls hunt at night.")
    assert prompt.endswith("\n\nInstruction: Describe owls.\nResponse: Owls hunt at night.")
    assert "<generated instruction>" not in prompt and "<output>" not in prompt


def test_screens_are_reasons_of_their_own_in_the_funnel():
    frame = pd.DataFrame({"input": ["q1", "", "q3", "q4", "q1"], "output": PASSAGES + PASSAGES[:1],
                          "passage": PASSAGES + PASSAGES[:1]})
    screens = {UNRATED: [False, False, True, False, False], BELOW_THRESHOLD: [False, False, False, True, False]}
    params = generation()
    records = run_funnel(frame, params, embed=fake_embed, screens=screens, task_type="ynqa", device="cpu")
    assert records["reason"].tolist() == ["clean", "empty", UNRATED, BELOW_THRESHOLD, "exact_duplicate"]
    assert records["kept"].tolist() == [True, False, False, False, True]
    summary = funnel_counts(records, params, screens)
    assert list(summary["funnel"])[:5] == ["generated", "unparsable", "empty", UNRATED, BELOW_THRESHOLD]
    assert summary["removed"] == {"unparsable": 0, "empty": 1, UNRATED: 1, BELOW_THRESHOLD: 1}
    assert summary["kept"] == 2


class Scripted:
    """A backend answering each prompt from a function of its text, counting prompts; it can die
    on a given call."""

    def __init__(self, answer, fail_on_call: int | None = None):
        self.answer, self.fail_on_call, self.calls, self.prompts = answer, fail_on_call, 0, 0

    def generate(self, prompts, seeds):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("backend died")
        self.prompts += len(prompts)
        return [[self.answer(p)] for p in prompts]


def backward_answer(prompt: str) -> str:
    """An instruction per passage; none for the owls."""
    return "" if "Owls" in prompt else f"Question about: {prompt.split()[2]}"


def forward_answer(prompt: str) -> str:
    """Ratings: 5 for the heart, 3 for the rain, unparsable for the bees."""
    assert prompt.startswith(wrap("You will see an instruction", BACKTRANSLATION_WRAPPER)[:30])
    if "heart" in prompt:
        return "Clear and expert.\nScore: 5"
    return "Blog-like.\nScore: 3" if "Rain" in prompt else "I like it."


def run(tmp_path, backward, forward, threshold=4):
    model = tmp_path / "model"  # what the shards' names hash; the scripted backends never read it
    model.mkdir(exist_ok=True)
    return run_backtranslation(PASSAGES, generation(shard_size=2), {"threshold": threshold, "rating_max_new_tokens": 8},
                               model_dir=model, backward_dir=model, forward_dir=model,
                               context_ids=range(len(PASSAGES)), shards_dir=tmp_path / "shards", embed=fake_embed,
                               backends=(backward, forward), task_type="ynqa", device="cpu")


def test_self_augmentation_and_curation_count_every_pair(tmp_path):
    result, scores = run(tmp_path, Scripted(backward_answer), Scripted(forward_answer))
    assert result.rows == [{"input": "Question about: heart", "output": PASSAGES[0], "context_id": 0}]
    funnel = result.summary["funnel"]
    assert (funnel["generated"], funnel["empty"], funnel[UNRATED], funnel[BELOW_THRESHOLD], funnel["clean"]) == \
        (4, 1, 1, 1, 1)
    assert scores["by_score"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1, "unparsable": 1}
    assert scores["rated"] == 3  # the empty instruction is not rated


def test_a_killed_generation_resumes_from_its_shards(tmp_path):
    backward, dying = Scripted(backward_answer), Scripted(forward_answer, fail_on_call=2)
    with pytest.raises(RuntimeError, match="backend died"):
        run(tmp_path, backward, dying)
    assert backward.prompts == 4 and dying.prompts == 2  # both instruction shards, one rating shard
    backward_again, forward_again = Scripted(backward_answer), Scripted(forward_answer)
    result, _ = run(tmp_path, backward_again, forward_again)
    assert backward_again.prompts == 0 and forward_again.prompts == 1  # only the missing rating shard
    assert result.shards["instructions"]["reused"] == 2 and result.shards["ratings"]["reused"] == 1
    assert len(result.rows) == 1
    # a stricter threshold needs no new generation: the ratings are reused, the funnel recounted
    stricter, _ = run(tmp_path, Scripted(backward_answer), Scripted(forward_answer), threshold=5)
    assert len(stricter.rows) == 1 and stricter.summary["funnel"][BELOW_THRESHOLD] == 1


def test_seed_stage_writes_both_directions_and_counts(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text("\n".join(json.dumps({"text": t}) for t in [
        "### Human: What is rain?### Assistant: Water from clouds.### Human: more?### Assistant: no",
        "### Human: Lonely question"]) + "\n")
    out = {k: tmp_path / f"{k}.parquet" for k in ("backward", "forward")}
    assert bonito_repro(["backtranslation", "seed", "--origin", json.dumps({"files": str(seed)}),
                         "--backward", str(out["backward"]), "--forward", str(out["forward"]),
                         "--manifest", str(tmp_path / "m.json")]) == 0
    assert pd.read_parquet(out["backward"]).to_dict("records") == [{"input": "Water from clouds.", "output": "What is rain?"}]
    assert pd.read_parquet(out["forward"]).to_dict("records") == [{"input": "What is rain?", "output": "Water from clouds."}]
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["counts"] == {"rows_in": 2, "pairs": 1, "later_turns_left_out": 1}
    assert manifest["drops"] == {"no_assistant_reply": 1}


def test_the_embedded_seed_parses_whole():
    pairs, drops, counts = seed_pairs(load_origin({"embedded": "guanaco_demo"}, "seed")["text"])
    assert not drops and counts["pairs"] == len(pairs) >= 20


@pytest.mark.slow  # a Python process against the local Hub
def test_the_paper_seed_downloads_from_a_hub_laid_out_as_guanaco(local_hub, tmp_path):
    """config.yaml's seed origin through the real datasets call: JSON lines whose splits come
    from the file names; the train split is read, the eval file left alone."""
    from test_hub import ok

    from bonito_repro.core.config import load_scale

    seed = load_scale("paper", REPO)["generators"]["backtranslation"]["seed"]
    assert list(seed) == ["hub"], seed
    out = {k: tmp_path / f"{k}.parquet" for k in ("backward", "forward", "manifest")}
    ok(local_hub.run(["backtranslation", "seed", "--origin", json.dumps(seed), "--backward", out["backward"],
                      "--forward", out["forward"], "--manifest", out["manifest"]], tmp_path / "hf"))
    pairs, drops, counts = seed_pairs(load_origin({"embedded": "guanaco_demo"}, "seed")["text"])
    manifest = json.loads(out["manifest"].read_text())
    assert manifest["counts"]["rows_in"] == counts["rows_in"] and manifest["counts"]["pairs"] == len(pairs)
    assert pd.read_parquet(out["forward"]).to_dict("records")[0] == {"input": pairs[0][0], "output": pairs[0][1]}
    served = [r["path"] for r in local_hub.requests() if "openassistant" in r.get("path", "")]
    assert any(p.endswith("openassistant_best_replies_train.jsonl") for p in served), served


@pytest.mark.slow
def test_seed_training_and_generation_end_to_end_with_a_tiny_model(tmp_path, tiny_model_dir):
    """The CLIs as the rules chain them: the embedded seed, both adapters by the training stage,
    then self-augmentation and self-curation of a few passages by those adapters. A random tiny
    model never writes a score, so every pair it instructs ends up unrated: an empty set, written
    with its manifest."""
    smoke = load_scale("smoke", REPO)
    seed = {k: tmp_path / f"{k}.parquet" for k in ("backward", "forward")}
    assert bonito_repro(["backtranslation", "seed", "--origin", json.dumps({"embedded": "guanaco_demo"}),
                         "--backward", str(seed["backward"]), "--forward", str(seed["forward"]),
                         "--manifest", str(tmp_path / "seed.json")]) == 0
    training = {**smoke["backtranslation_training"], "max_steps": 2, "one_epoch_below": None, "save_steps": 2}
    for direction in seed:
        assert bonito_repro(["train", "--mode", "pairs", "--wrapper", BACKTRANSLATION_WRAPPER,
                             "--base", str(tiny_model_dir), "--data", str(seed[direction]),
                             "--out", str(tmp_path / direction), "--checkpoints", str(tmp_path / f"ck-{direction}"),
                             "--manifest", str(tmp_path / f"{direction}.json"), "--params", json.dumps(training),
                             "--device", "cpu"]) == 0
    passages, test = tmp_path / "passages.parquet", tmp_path / "test.parquet"
    pd.DataFrame({"input": PASSAGES}).to_parquet(passages)
    pd.DataFrame({"question": ["Do owls hunt at night?"], "answer": ["yes"]}).to_parquet(test)
    out = tmp_path / "synthetic.parquet"
    params = {**smoke["generation"], "max_new_tokens": 8, "shard_size": 2}
    assert bonito_repro(["backtranslation", "generate", "--dataset", "demo", "--task-type", "ynqa",
                         "--passages", str(passages), "--test", str(test), "--model", str(tiny_model_dir),
                         "--backward-adapter", str(tmp_path / "backward"), "--forward-adapter", str(tmp_path / "forward"),
                         "--params", json.dumps(params), "--curation", json.dumps({"threshold": 5, "rating_max_new_tokens": 8}),
                         "--shards", str(tmp_path / "shards"), "--out", str(out), "--manifest", str(tmp_path / "m.json"),
                         "--records", str(tmp_path / "records.parquet"), "--formats", str(tmp_path / "formats"),
                         "--device", "cpu"]) == 0
    manifest = json.loads((tmp_path / "m.json").read_text())
    funnel, ratings = manifest["funnel"], manifest["ratings"]
    assert funnel["generated"] == len(PASSAGES) and funnel["empty"] + funnel[UNRATED] == len(PASSAGES)
    assert ratings["rated"] == funnel[UNRATED] == ratings["by_score"]["unparsable"]
    assert manifest["kept"] == 0 and pd.read_parquet(out).empty
    assert manifest["shards"]["ratings"]["total"] == (ratings["rated"] + 1) // 2
    records = pd.read_parquet(tmp_path / "records.parquet")
    assert records["output"].tolist() == PASSAGES  # the passage is the response
