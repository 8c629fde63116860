"""Instruction backtranslation as a generator: the oasst1 seed chosen as Li et al. chose theirs,
with its drop counts, the rating parser on good and malformed ratings, the ranked rating, the
threshold, the funnel's screens, a killed generation that resumes from its shards, long passages,
and the seed stage and training reused end to end."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bonito_repro.__main__ import main as bonito_repro
from bonito_repro.core.config import load_config, load_scale
from bonito_repro.generate.backtranslation import (BELOW_THRESHOLD, CURATION_PROMPT, SEED_COLUMNS, UNRATED,
                                                   curation_prompt, curation_screens, parse_rating,
                                                   run_backtranslation, score_counts, seed_pairs)
from bonito_repro.generate.funnel import funnel_counts, run_funnel
from bonito_repro.core.prompts import BACKTRANSLATION_WRAPPER, wrap
from bonito_repro.core.origins import load_origin
from conftest import REPO

PASSAGES = ["The heart pumps blood through the body.", "Rain falls when clouds get heavy.",
            "Bees make honey from flowers.", "Owls hunt at night."]


def local_generator() -> dict:
    """The local scale's backtranslation generator (config/every_generator.yaml selects it)."""
    config = load_config(REPO / "config.yaml", REPO / "config" / "local.yaml", REPO / "config" / "every_generator.yaml")
    return config["generators"]["backtranslation"]


def generation(**changes) -> dict:
    return {**load_scale("paper", REPO)["generation"], **changes}


def fake_embed(texts):
    """Distinct unit vectors per distinct text: no near duplicates, no cosine contamination."""
    vectors = np.zeros((len(texts), 64), np.float32)
    for row, text in enumerate(texts):
        vectors[row, hash(text) % 64] = 1.0
    return vectors


SELECTION = {"language": "en", "rank": 0, "max_pairs": None, "seed": 42}


def message(message_id: str, parent: str | None, role: str, text: str, lang: str = "en",
            rank: int | None = None) -> dict:
    """One oasst1 message row (the columns the seed is chosen by)."""
    return {"message_id": message_id, "parent_id": parent, "role": role, "lang": lang, "rank": rank, "text": text}


def conversations() -> list[dict]:
    return [
        message("a", None, "prompter", "What is rain?"),
        message("a1", "a", "assistant", "Water falling from clouds.", rank=0),
        message("a2", "a", "assistant", "Wet stuff.", rank=1),                    # a lower-ranked reply
        message("a1x", "a1", "prompter", "And snow?"),                            # a later turn
        message("a1xy", "a1x", "assistant", "Frozen rain, roughly.", rank=0),
        message("b", None, "prompter", "Was ist Regen?", lang="de"),
        message("b1", "b", "assistant", "Wasser aus Wolken.", lang="de", rank=0),
        message("c", None, "prompter", "Anyone here?"),                            # no reply
        message("d", None, "prompter", "Capital of Australia?"),
        message("d1", "d", "assistant", "Canberra.", rank=None),                   # never ranked
        message("e", None, "prompter", "   "),
        message("e1", "e", "assistant", "An answer to nothing.", rank=0),
        message("f", None, "prompter", "A question?"),
        message("f1", "f", "assistant", "  ", rank=0),
        message("g", None, "assistant", "I speak first."),
        message("h", None, "prompter", "Why is the sky blue?"),
        message("h1", "h", "assistant", "Blue light scatters most.", rank=0),
    ]


def test_the_seed_is_the_first_turn_of_english_top_ranked_conversations():
    """Li et al.'s seed: of each oasst1 conversation, the root prompt and its reply ranked 0, in
    English; every conversation left out is counted by reason, later turns and other replies too."""
    pairs, drops, counts = seed_pairs(conversations(), SELECTION)
    assert pairs == [("What is rain?", "Water falling from clouds."), ("Why is the sky blue?", "Blue light scatters most.")]
    assert drops == {"other_language": 1, "no_reply": 1, "no_reply_ranked_0": 1, "empty_instruction": 1,
                     "empty_response": 1, "root_not_a_prompt": 1}
    assert counts == {"messages_in": 17, "conversations": 8, "qualifying": 2, "other_replies_left_out": 5,
                      "later_turns_left_out": 2, "pairs": 2}
    assert counts["conversations"] == counts["pairs"] + sum(drops.values())
    # the best-ranked reply is the selection's, and so is the language
    assert seed_pairs(conversations(), {**SELECTION, "rank": 1})[0] == [("What is rain?", "Wet stuff.")]
    assert seed_pairs(conversations(), {**SELECTION, "language": "de"})[0] == [("Was ist Regen?", "Wasser aus Wolken.")]


def test_the_seed_is_capped_by_a_seeded_sample():
    rows = [m for i in range(10) for m in (message(f"q{i}", None, "prompter", f"Question {i}?"),
                                            message(f"r{i}", f"q{i}", "assistant", f"Answer {i}.", rank=0))]
    pairs, drops, counts = seed_pairs(rows, {**SELECTION, "max_pairs": 4})
    assert len(pairs) == counts["pairs"] == 4 and drops == {"beyond_max_pairs": 6} and counts["qualifying"] == 10
    assert pairs == sorted(pairs, key=lambda p: int(p[0].split()[1][:-1]))  # kept in file order
    assert pairs == seed_pairs(rows, {**SELECTION, "max_pairs": 4})[0]   # the same sample again
    assert pairs != seed_pairs(rows, {**SELECTION, "max_pairs": 4, "seed": 7})[0]


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
    return run_backtranslation(PASSAGES, generation(shard_size=2), {"threshold": threshold, "rating": "generated", "rating_max_new_tokens": 8},
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


def seed_cli(tmp_path, origin: dict, selection: dict = SELECTION) -> tuple[dict, dict]:
    out = {k: tmp_path / f"{k}.parquet" for k in ("backward", "forward")}
    assert bonito_repro(["backtranslation", "seed", "--origin", json.dumps(origin), "--selection", json.dumps(selection),
                         "--backward", str(out["backward"]), "--forward", str(out["forward"]),
                         "--manifest", str(tmp_path / "m.json")]) == 0
    return out, json.loads((tmp_path / "m.json").read_text())


def test_seed_stage_writes_both_directions_and_counts(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text("\n".join(json.dumps(m) for m in conversations()[:8]) + "\n")
    out, manifest = seed_cli(tmp_path, {"files": str(seed)})
    assert pd.read_parquet(out["backward"]).to_dict("records") == [{"input": "Water falling from clouds.", "output": "What is rain?"}]
    assert pd.read_parquet(out["forward"]).to_dict("records") == [{"input": "What is rain?", "output": "Water falling from clouds."}]
    assert manifest["counts"] == {"messages_in": 8, "conversations": 3, "qualifying": 1, "other_replies_left_out": 2,
                                  "later_turns_left_out": 2, "pairs": 1}
    assert manifest["drops"] == {"other_language": 1, "no_reply": 1} and manifest["params"]["selection"] == SELECTION


def test_a_seed_without_oasst1s_columns_is_named(tmp_path):
    """A seed in another layout (Guanaco's `text` conversations) stops with the columns it lacks."""
    seed = tmp_path / "guanaco.jsonl"
    seed.write_text(json.dumps({"text": "### Human: What is rain?### Assistant: Water from clouds."}) + "\n")
    with pytest.raises(SystemExit, match=r"no column\(s\) \['message_id', 'parent_id', 'role', 'lang', 'rank'\]"):
        seed_cli(tmp_path, {"files": str(seed)})
    with pytest.raises(SystemExit, match="backtranslation_seed_selection.language"):
        seed_cli(tmp_path, {"files": str(seed)}, {**SELECTION, "language": ""})


def test_the_embedded_seed_is_laid_out_as_oasst1():
    rows = load_origin({"embedded": "oasst1_demo"}, "seed")
    assert set(SEED_COLUMNS) <= set(rows.column_names)
    pairs, drops, counts = seed_pairs(rows.to_list(), local_generator()["seed_selection"])
    assert len(pairs) == 28 and drops == {"other_language": 3, "no_reply": 1, "no_reply_ranked_0": 1}
    assert counts["other_replies_left_out"] == 6 + 3 + 1 and counts["later_turns_left_out"] == 4


def test_the_paper_seed_is_li_et_als():
    spec = load_scale("paper", REPO)["generators"]["backtranslation"]
    assert spec["seed"]["hub"]["id"] == "OpenAssistant/oasst1" and spec["seed"]["hub"]["split"] == "train"
    assert spec["seed_selection"] == {"language": "en", "rank": 0, "max_pairs": 3200, "seed": 42}
    assert spec["rating"] == "generated" and local_generator()["rating"] == "ranked"


@pytest.mark.slow  # a Python process against the local Hub
def test_the_paper_seed_downloads_from_a_hub_laid_out_as_oasst1(local_hub, tmp_path):
    """config.yaml's seed origin through the real datasets call: oasst1's parquet files, the train
    split's messages chosen as on the embedded copy."""
    from test_hub import ok

    spec = load_scale("paper", REPO)["generators"]["backtranslation"]
    seed = spec["seed"]
    assert list(seed) == ["hub"], seed
    out = {k: tmp_path / f"{k}.parquet" for k in ("backward", "forward", "manifest")}
    ok(local_hub.run(["backtranslation", "seed", "--origin", json.dumps(seed), "--selection",
                      json.dumps(spec["seed_selection"]), "--backward", out["backward"], "--forward", out["forward"],
                      "--manifest", out["manifest"]], tmp_path / "hf"))
    pairs, drops, _ = seed_pairs(load_origin({"embedded": "oasst1_demo"}, "seed").to_list(), spec["seed_selection"])
    manifest = json.loads(out["manifest"].read_text())
    assert manifest["counts"]["pairs"] == len(pairs) and manifest["drops"] == drops
    assert pd.read_parquet(out["forward"]).to_dict("records")[0] == {"input": pairs[0][0], "output": pairs[0][1]}
    served = [r["path"] for r in local_hub.requests() if "oasst1" in r.get("path", "") and r["endpoint"] == "resolve"]
    assert any(p.endswith("data/train-00000-of-00001.parquet") for p in served), served


@pytest.fixture(scope="module")
def seed_adapters(tmp_path_factory, tiny_model_dir) -> dict:
    """The CLIs as the rules chain them: the embedded seed, then both adapters by the training
    stage (two steps each on the tiny random model)."""
    tmp = tmp_path_factory.mktemp("seed_adapters")
    smoke = load_scale("smoke", REPO)
    seed, _ = seed_cli(tmp, {"embedded": "oasst1_demo"})
    training = {**smoke["backtranslation_training"], "max_steps": 2, "one_epoch_below": None, "save_steps": 2}
    for direction in seed:
        assert bonito_repro(["train", "--mode", "pairs", "--wrapper", BACKTRANSLATION_WRAPPER,
                             "--base", str(tiny_model_dir), "--data", str(seed[direction]),
                             "--out", str(tmp / direction), "--checkpoints", str(tmp / f"ck-{direction}"),
                             "--manifest", str(tmp / f"{direction}.json"), "--params", json.dumps(training),
                             "--device", "cpu"]) == 0
    return {direction: tmp / direction for direction in seed}


def generate_cli(tmp_path, model, adapters: dict, passages: list[str], curation: dict, **generation) -> dict:
    """`backtranslation generate` on ``passages``: its manifest."""
    tmp_path.mkdir(exist_ok=True)
    files = {name: tmp_path / f"{name}.parquet" for name in ("passages", "test", "out", "records")}
    pd.DataFrame({"input": passages}).to_parquet(files["passages"])
    pd.DataFrame({"question": ["Do owls hunt at night?"], "answer": ["yes"]}).to_parquet(files["test"])
    params = {**load_scale("smoke", REPO)["generation"], "max_new_tokens": 8, "shard_size": 2, **generation}
    assert bonito_repro(["backtranslation", "generate", "--dataset", "demo", "--task-type", "ynqa",
                         "--passages", str(files["passages"]), "--test", str(files["test"]), "--model", str(model),
                         "--backward-adapter", str(adapters["backward"]), "--forward-adapter", str(adapters["forward"]),
                         "--params", json.dumps(params), "--curation", json.dumps(curation),
                         "--shards", str(tmp_path / "shards"), "--out", str(files["out"]),
                         "--manifest", str(tmp_path / "m.json"), "--records", str(files["records"]),
                         "--formats", str(tmp_path / "formats"), "--device", "cpu"]) == 0
    return json.loads((tmp_path / "m.json").read_text())


@pytest.mark.slow
def test_seed_training_and_generation_end_to_end_with_a_tiny_model(tmp_path, tiny_model_dir, seed_adapters):
    """Self-augmentation and self-curation of a few passages by the seed's adapters. A random
    tiny model never writes a score, so every pair it instructs ends up unrated: an empty set,
    written with its manifest."""
    manifest = generate_cli(tmp_path, tiny_model_dir, seed_adapters, PASSAGES,
                            {"threshold": 5, "rating": "generated", "rating_max_new_tokens": 8})
    funnel, ratings = manifest["funnel"], manifest["ratings"]
    assert funnel["generated"] == len(PASSAGES) and funnel["empty"] + funnel[UNRATED] == len(PASSAGES)
    assert ratings["rated"] == funnel[UNRATED] == ratings["by_score"]["unparsable"]
    assert manifest["kept"] == 0 and pd.read_parquet(tmp_path / "out.parquet").empty
    assert manifest["shards"]["ratings"]["total"] == (ratings["rated"] + 1) // 2
    records = pd.read_parquet(tmp_path / "records.parquet")
    assert records["output"].tolist() == PASSAGES  # the passage is the response


@pytest.mark.slow
def test_the_ranked_rating_scores_every_pair_the_model_cannot_rate_in_writing(tmp_path, tiny_model_dir, seed_adapters):
    """rating: ranked: the same model that writes no score gives every pair one, the "Score: k"
    it finds likeliest after the rating prompt, so the set is no longer empty by construction."""
    manifest = generate_cli(tmp_path, tiny_model_dir, seed_adapters, PASSAGES,
                            {"threshold": 1, "rating": "ranked", "rating_max_new_tokens": 8})
    funnel, ratings = manifest["funnel"], manifest["ratings"]
    assert ratings["by_score"]["unparsable"] == 0 and funnel[UNRATED] == 0
    assert sum(ratings["by_score"][str(k)] for k in range(1, 6)) == ratings["rated"] == len(PASSAGES) - funnel["empty"]
    assert manifest["kept"] == ratings["rated"] == len(pd.read_parquet(tmp_path / "out.parquet"))
    records = pd.read_parquet(tmp_path / "records.parquet")
    rated = records[records["input"] != ""]
    assert rated["rating"].str.fullmatch(r"Score: [1-5]").all()
    assert manifest["params"]["curation"]["rating"] == "ranked"


def test_the_ranked_rating_is_the_likeliest_score(tiny_model_dir):
    """ScoreRanking answers each prompt with the "Score: k" of highest summed log-probability,
    the reference computed one sequence per score."""
    from bonito_repro.generate.backtranslation import ScoreRanking, score_token_ids
    from bonito_repro.runtime.models import encode_with_bos
    from bonito_repro.runtime.scoring import score_choices_separately

    ranking = ScoreRanking(tiny_model_dir, None, token_budget=4096, bf16=False, device="cpu")
    prompts = [wrap(curation_prompt(f"Describe {p.split()[1]}.", p), BACKTRANSLATION_WRAPPER) for p in PASSAGES]
    choices = score_token_ids(ranking.tokenizer)
    reference = score_choices_separately(ranking.model, encode_with_bos(ranking.tokenizer, prompts),
                                         [choices] * len(prompts), batch_tokens=4096,
                                         pad_id=ranking.tokenizer.pad_token_id)
    assert ranking.generate(prompts, [0] * len(prompts)) == [[f"Score: {int(np.argmax(r)) + 1}"] for r in reference]


@pytest.mark.slow
def test_a_passage_too_long_for_the_rating_prompt_is_dropped_or_split(tmp_path, tiny_model_dir, seed_adapters):
    """generation.long_passages for backtranslation: a passage whose rating prompt (the rubric, the
    instruction, the passage) would overflow the model's context is dropped or split, counted as
    for Bonito. (It stopped the whole dataset's generation.)"""
    import shutil

    from bonito_repro.runtime.models import encode_with_bos, load_tokenizer

    model = tmp_path / "short_context"
    shutil.copytree(tiny_model_dir, model)
    tokenizer = load_tokenizer(model)
    rubric = len(encode_with_bos(tokenizer, [wrap(curation_prompt("", PASSAGES[0]), BACKTRANSLATION_WRAPPER)])[0])
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = rubric + 8 + 8 + 8 + 60  # instruction, margin, rating, 60 to spare
    (model / "config.json").write_text(json.dumps(config))
    long = " ".join([PASSAGES[1]] * 30)
    curation = {"threshold": 5, "rating": "generated", "rating_max_new_tokens": 8}
    dropped = generate_cli(tmp_path / "drop", model, seed_adapters, [PASSAGES[0], long, PASSAGES[2]], curation,
                           long_passages="drop")
    assert dropped["counts"]["long_passages"] == 1 and dropped["drops"]["long_passage"] == 1
    assert dropped["funnel"]["generated"] == 2
    split = generate_cli(tmp_path / "split", model, seed_adapters, [PASSAGES[0], long, PASSAGES[2]], curation,
                         long_passages="split", split_overlap=8)
    pieces = split["counts"]["long_passage_pieces"]
    assert split["counts"]["long_passages"] == 1 and pieces >= 2 and "long_passage" not in split["drops"]
    records = pd.read_parquet(tmp_path / "split" / "records.parquet")
    assert records["context_id"].tolist() == [0] + [1] * pieces + [2]
    assert all(piece in long for piece in records["output"][1:1 + pieces])  # each piece is its response
