"""ctga-v1: meta-templates from promptsource's P3 templates, sampling, drops, outputs."""
import json
from pathlib import Path

import datasets
import pandas as pd
import pytest

from bonito_repro.ctga import build, published, render, tables, templates
from bonito_repro.core.config import load_scale
from bonito_repro.ctga.cli import main
from bonito_repro.core.prompts import CONTEXT_PLACEHOLDER, bonito_input, parse_bonito_output
from bonito_repro.core.origins import load_origin
from bonito_repro.core.tasks import TASK_TYPES

REPO = Path(__file__).resolve().parents[1]


def local_ctga() -> dict:
    return load_scale("local", REPO)["ctga"]


def metas_of(p3_dataset: str) -> dict[str, templates.MetaTemplate]:
    dataset, config = tables.split_p3_dataset(p3_dataset)
    metas, dropped = templates.build_meta_templates(
        p3_dataset, tables.read_annotations()[p3_dataset], tables.read_context_expressions()[p3_dataset],
        templates.promptsource_templates(dataset, config))
    assert not any(dropped.values())
    return {m.name: m for m in metas}


def rows_of(p3_dataset: str) -> list[dict]:
    return list(load_origin({"embedded": p3_dataset}, "ctga"))


@pytest.fixture(scope="module")
def local_build() -> build.CtgaBuild:
    return build.build(local_ctga())


# ---------------------------------------------------------------- tables and meta-templates
def test_tables_match_the_authors_counts():
    annotations = tables.read_annotations()
    assert sum(map(len, annotations.values())) == 323
    assert len(annotations) == 38
    expressions = tables.read_context_expressions()
    assert len(expressions) == 39 and set(annotations) < set(expressions)
    assert {a.task_type for rows in annotations.values() for a in rows} == set(TASK_TYPES.values())


def test_a_bad_task_type_in_the_table_names_file_and_line(tmp_path):
    path = tmp_path / "types.csv"
    path.write_text("dataset_name,dataset_config_name,template_name,task_type\n"
                    "imdb,,t1,sentiment\nimdb,,t2,vibes\n")
    with pytest.raises(ValueError, match=r"types.csv, line 3: unknown task type 'vibes'"):
        tables.read_annotations(path)


def test_context_matching_ignores_jinja_spacing():
    pattern = templates.context_pattern("{{ context }}")
    assert pattern.fullmatch("{{context}}") and pattern.fullmatch("{{  context }}")
    assert not pattern.fullmatch("{{ contexts }}")
    # dream: the table writes join("\n\n") with newlines, the templates with escapes
    dream = tables.read_context_expressions()["dream"]
    assert templates.context_pattern(dream).fullmatch('{{dialogue | join("\\n\\n")}}')


def test_context_matching_keeps_surrounding_text():
    jinja = "Passage:\n\n{{ passage }} \nQuestion: {{question}}|||{{answer}}"
    meta = templates.meta_jinja(jinja, "{{passage}}")
    assert meta == ("{{passage}}|||Passage:\n\n{{ctga_context_placeholder}} \n"
                    f"Question: {{{{question}}}}{templates.TASK_SEPARATOR}{{{{answer}}}}")


def test_exact_matching_for_qasc_and_missing_context():
    expression = "{{ fact1[0]|capitalize }}{{ fact1[1:]|trim|trim('.') }}"
    spaced = "{{fact1[0] | capitalize}}{{ fact1[1:]|trim|trim('.') }} ||| x"
    assert templates.meta_jinja(spaced, expression, exact=True) is None
    assert templates.meta_jinja(spaced, expression) is not None
    assert templates.meta_jinja("{{question}} ||| {{answer}}", "{{passage}}") is None


def test_every_annotated_template_gets_a_meta_template():
    annotations, expressions = tables.read_annotations(), tables.read_context_expressions()
    total = 0
    for p3_dataset in annotations:
        metas, dropped = build.p3_dataset_meta_templates(p3_dataset, annotations, expressions)
        assert not any(dropped.values()), (p3_dataset, dropped)
        total += len(metas)
    assert total == 323


def test_a_template_without_the_context_is_dropped_by_name():
    from promptsource.templates import Template

    kept = Template("kept", "{{text}} ||| {{label}}", "")
    lost = Template("lost", "{{title}} ||| {{label}}", "")
    annotations = [tables.Annotation("kept", "sentiment"), tables.Annotation("lost", "sentiment"),
                   tables.Annotation("gone", "sentiment")]
    metas, dropped = templates.build_meta_templates("imdb", annotations, "{{text}}",
                                                    {"kept": kept, "lost": lost})
    assert [m.name for m in metas] == ["kept"]
    assert dropped == {"template_context_not_found": ["lost"],
                       "template_missing_in_promptsource": ["gone"]}


# ---------------------------------------------------------------- rendering
@pytest.mark.parametrize("p3_dataset,template", [
    ("super_glue/boolq", "GPT-3 Style"),
    ("squad", "answer_given_context_and_question"),
    ("anli", "GPT-3 style"),
    ("imdb", "Movie Expressed Sentiment"),
    ("samsum", "Summarize this dialogue:"),
    ("super_glue/record", "Which one is the placeholder?"),
    ("hellaswag", "Randomized prompts template"),
    ("app_reviews", "generate_review"),
])
def test_filling_the_context_gives_back_the_p3_rendering(p3_dataset, template):
    meta = metas_of(p3_dataset)[template]
    for i, example in enumerate(rows_of(p3_dataset)):
        row = render.render_row(example, meta, f"42/{p3_dataset}/{i}")
        assert row["status"] == "", row["error"]
        context = row["context"]
        assert row["instruction"].replace(CONTEXT_PLACEHOLDER, context) == row["p3_input"]
        assert row["response"].replace(CONTEXT_PLACEHOLDER, context) == row["p3_output"]
        direct = meta.original.apply(example)[0]
        assert row["p3_input"] == direct or "choice" in meta.original.jinja


def test_the_passage_becomes_the_literal_placeholder():
    example = rows_of("super_glue/boolq")[0]
    row = render.render_row(example, metas_of("super_glue/boolq")["GPT-3 Style"], "s")
    passage = example["passage"]
    assert row["context"] == passage
    assert row["instruction"].startswith("{{context}}") and passage not in row["instruction"]
    assert row["response"] in ("Yes", "No")


def test_random_choices_are_the_same_in_both_renders_and_reproducible():
    meta = metas_of("super_glue/record")["Which one is the placeholder?"]
    example = {**rows_of("super_glue/record")[0], "answers": [f"Answer {i}" for i in range(20)]}
    rows = [render.render_row(example, meta, f"42/record/{i}") for i in range(12)]
    assert all(r["response"] == r["p3_output"] for r in rows)
    assert len({r["response"] for r in rows}) > 1
    assert render.render_row(example, meta, "42/record/3") == rows[3]


def test_empty_targets_and_render_errors_are_statuses():
    boolq = {**rows_of("super_glue/boolq")[0], "label": -1}  # an unlabelled (test split) row
    row = render.render_row(boolq, metas_of("super_glue/boolq")["GPT-3 Style"], "s")
    assert row["status"] == "empty_target"
    wsc = {**rows_of("super_glue/wsc.fixed")[0], "span2_index": "three"}
    row = render.render_row(wsc, metas_of("super_glue/wsc.fixed")["in other words"], "s")
    assert row["status"] == "render_error" and "TypeError" in row["error"]


def test_sampling_is_seeded_per_p3_dataset_and_capped():
    rows, choices = render.sample(1000, 7, 50, 42, "imdb")
    again = render.sample(1000, 7, 50, 42, "imdb")
    assert len(rows) == 50 == len(set(rows)) and rows.tolist() == again[0].tolist()
    assert choices.tolist() == again[1].tolist() and set(choices) <= set(range(7))
    assert render.sample(1000, 7, 50, 42, "xsum")[0].tolist() != rows.tolist()
    assert len(render.sample(10, 3, 100, 42, "imdb")[0]) == 10


def test_parallel_rendering_gives_the_same_rows():
    p3_dataset = "super_glue/cb"
    dataset = datasets.concatenate_datasets([load_origin({"embedded": p3_dataset}, "ctga")] * 8)
    metas = list(metas_of(p3_dataset).values())
    one = render.render_p3_dataset(dataset, p3_dataset, metas, 100, 42, num_proc=1)
    two = render.render_p3_dataset(dataset, p3_dataset, metas, 100, 42, num_proc=2, rows_per_process=10)
    pd.testing.assert_frame_equal(one, two)


# ---------------------------------------------------------------- the local build
def test_local_build_has_all_sixteen_task_types(local_build):
    assert set(local_build.train["task_type"]) == set(TASK_TYPES.values())
    assert len(local_build.validation) == local_ctga()["validation_size"]
    assert 300 <= len(local_build.train) <= 1500


def test_local_build_rows_are_exact_bonito_pairs(local_build):
    assert list(local_build.train.columns) == build.OUTPUT_COLUMNS
    for row in local_build.train.head(60).itertuples():
        task_type, context = published.parse_bonito_input(row.input)
        assert task_type == row.task_type
        assert row.input == bonito_input(context, row.task_type)
        assert row.output.count("\n<|pipe|>\n") == 1
        assert parse_bonito_output(row.output, context) is not None


def test_local_build_counts_add_up(local_build):
    counts, drops = local_build.counts, local_build.drops
    assert counts["templates_annotated"] == counts["templates_used"] == 323
    assert counts["rows_sampled"] == counts["rows_kept"] + sum(drops.values())
    assert counts["rows_kept"] == counts["train"] + counts["validation"] == counts["p3"]
    assert drops.get("empty_target", 0) > 0  # the demo data has rows whose templates render nothing
    for p3_dataset, stats in counts["per_p3_dataset"].items():
        assert stats["sampled"] == stats["kept"] + sum(stats["drops"].values()), p3_dataset
    per_type = counts["per_task_type"]
    assert sum(v["train"] for v in per_type.values()) == counts["train"]


def test_p3_rows_are_the_same_rows_with_the_original_templates(local_build):
    p3 = local_build.p3
    assert len(p3) == len(local_build.train) + len(local_build.validation)
    ctga = pd.concat([local_build.train, local_build.validation], ignore_index=True)
    assert (p3["template"] == ctga["template"]).all() and (p3["p3_dataset"] == ctga["p3_dataset"]).all()
    exact = 0
    for (_, c), (_, p) in zip(ctga.iterrows(), p3.iterrows()):
        context = published.parse_bonito_input(c["input"])[1]
        p3_pair = (p["input"].strip(), p["output"].strip())
        exact += parse_bonito_output(c["output"], context) == p3_pair
    assert exact / len(p3) > 0.9  # the rest: wiki_hop, whose supports render as a list in place


# ---------------------------------------------------------------- published set, CLI
def test_published_set_in_its_schema_is_read_back(tmp_path, local_build):
    rows = local_build.train.head(40)
    frame = pd.DataFrame({
        "context": [published.parse_bonito_input(t)[1] for t in rows["input"]],
        "task_input": "", "task_output": "",
        "dataset": [s.split("/")[0] for s in rows["p3_dataset"]],
        "dataset_config": [s.split("/")[1] if "/" in s else None for s in rows["p3_dataset"]],
        "task_type": rows["task_type"], "input": rows["input"], "output": rows["output"]})
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "output": "no pipe here"}
    path = tmp_path / "ctga-v1.parquet"
    frame.to_parquet(path)
    hp = {**local_ctga(), "use_published": True, "published": {"files": str(path)},
          "validation_size": 5}
    result = published.from_published(hp)
    assert result.drops == {"published_unparseable_output": 1}
    assert len(result.train) + len(result.validation) == 40 == len(result.p3)
    assert set(result.train["p3_dataset"]) <= set(rows["p3_dataset"])
    read_back = result.train["input"].tolist() + result.validation["input"].tolist()
    assert sorted(read_back) == sorted(rows["input"])
    table = published.compare_task_types(rows, published.published_task_types({"files": str(path)}))
    assert table["built"].sum() == 40 and table["published"].sum() == 41  # counts every row
    assert table["built_share"].sum() == pytest.approx(1.0, abs=1e-3)


def cli_args(tmp_path, hp):
    return ["build", "--train", str(tmp_path / "train.parquet"), "--validation",
            str(tmp_path / "validation.parquet"), "--p3", str(tmp_path / "p3.parquet"),
            "--manifest", str(tmp_path / "manifest.json"), "--params", json.dumps(hp)]


def test_cli_writes_tables_and_manifest(tmp_path):
    hp = {**local_ctga(), "validation_size": 4, "max_examples_per_dataset": 5,
          "p3_datasets": {d: {"embedded": d} for d in ["squad", "super_glue/boolq", "anli"]}}
    assert main(cli_args(tmp_path, hp)) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["counts"]["rows_sampled"] == 15
    assert manifest["counts"]["train"] == len(pd.read_parquet(tmp_path / "train.parquet"))
    assert len(pd.read_parquet(tmp_path / "validation.parquet")) == 4
    assert manifest["mode"] == "built" and manifest["params"] == hp


def test_a_p3_dataset_losing_rows_to_render_errors_stops_the_build(tmp_path):
    rows = rows_of("super_glue/wsc.fixed")
    broken = tmp_path / "wsc.jsonl"  # a span index as text: the templates that slice by it fail
    broken.write_text("".join(json.dumps({**row, "span2_index": "three"}) + "\n" for row in rows))
    hp = {**local_ctga(), "validation_size": 2,
          "p3_datasets": {"super_glue/wsc.fixed": {"files": str(broken)}, "squad": {"embedded": "squad"}}}
    with pytest.raises(ValueError, match=r"ctga.p3_datasets.super_glue/wsc.fixed: 4 of 10 sampled rows "
                       r"failed to render \(40%.*first error, template 'in other words': TypeError"):
        build.build(hp)
    tolerated = build.build({**hp, "max_render_error_share": 1.0})
    assert tolerated.drops["render_error"] == 4
    assert tolerated.counts["per_p3_dataset"]["super_glue/wsc.fixed"]["kept"] == 6


def test_cli_errors_name_the_config_key(tmp_path):
    hp = {**local_ctga(), "p3_datasets": {"no_such_dataset": {"embedded": "no_such_dataset"}}}
    with pytest.raises(SystemExit, match=r"ctga.p3_datasets.no_such_dataset"):
        main(cli_args(tmp_path, hp))
    with pytest.raises(SystemExit, match=r"ctga.validation_size"):
        main(cli_args(tmp_path, {**local_ctga(), "validation_size": 10_000}))
    with pytest.raises(SystemExit, match=r"ctga: 'seed' is a required property"):
        main(cli_args(tmp_path, {k: v for k, v in local_ctga().items() if k != "seed"}))
