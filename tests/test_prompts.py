"""The exact Bonito strings (docs/protocol.md, sections 3 and 6) and the task-type names."""
import pytest

from bonito_repro.core.prompts import bonito_input, bonito_output, parse_bonito_output
from bonito_repro.core.tasks import TASK_TYPES, task_type_code, task_type_name


def test_sixteen_task_types_with_distinct_names():
    assert len(TASK_TYPES) == 16
    assert len(set(TASK_TYPES.values())) == 16
    assert TASK_TYPES["exqa"] == "extractive question answering"
    assert TASK_TYPES["nli"] == "natural language inference"
    assert TASK_TYPES["ynqa"] == "yes-no question answering"


def test_bonito_input_is_byte_exact():
    expected = ("<|tasktype|>\nextractive question answering\n<|context|>\n"
                "The river floods in spring.\n<|task|>\n")
    assert bonito_input("The river floods in spring.", "exqa") == expected
    assert bonito_input("  The river floods in spring.\n", TASK_TYPES["exqa"]) == expected
    assert bonito_input("a", "te").encode() == (
        b"<|tasktype|>\ntextual entailment\n<|context|>\na\n<|task|>\n")


def test_bonito_output_joins_with_the_pipe_line():
    assert bonito_output("Q: {{context}}", "yes") == "Q: {{context}}\n<|pipe|>\nyes"


@pytest.mark.parametrize("bad", ["extractive qa", "EXQA", "", "nli ", "task"])
def test_bad_task_types_raise(bad):
    with pytest.raises(ValueError, match="unknown task type"):
        bonito_input("text", bad)
    with pytest.raises(ValueError):
        task_type_name(bad)


def test_code_and_name_are_interchangeable():
    for code, name in TASK_TYPES.items():
        assert task_type_name(code) == task_type_name(name) == name
        assert task_type_code(name) == task_type_code(code) == code


def test_parse_replaces_context_in_both_parts_and_strips():
    text = " Read: {{context}}\nIs it true? \n<|pipe|>\n  {{context}} says yes \n"
    assert parse_bonito_output(text, " The sky is blue. ") == (
        "Read: The sky is blue.\nIs it true?", "The sky is blue. says yes")


@pytest.mark.parametrize("text", ["no pipe at all", "a <|pipe|> b <|pipe|> c", "<|pipe|><|pipe|>"])
def test_parse_needs_exactly_two_parts(text):
    assert parse_bonito_output(text, "ctx") is None


def test_parse_keeps_an_empty_side_for_the_caller_to_count():
    assert parse_bonito_output("question\n<|pipe|>\n", "ctx") == ("question", "")


def test_output_round_trips_through_parse():
    instruction, response = "Summarize: {{context}}", "Short."
    assert parse_bonito_output(bonito_output(instruction, response), "Long text.") == (
        "Summarize: Long text.", "Short.")
