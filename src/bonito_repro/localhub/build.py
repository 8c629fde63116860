"""Write the repositories of ``data/local_hub.yaml`` as folders the local Hub server serves.

Every repository is laid out as its real counterpart of the paper-scale config is (see the YAML
file's comments), filled with a few rows of the embedded demo data or a tiny random model, so a
whole build takes seconds.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import yaml

from ..core import PACKAGE_DATA
from ..core.prompts import bonito_input, bonito_output
from ..core.origins import EMBEDDED_DIR

SPEC_PATH = PACKAGE_DATA / "local_hub.yaml"
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n"
                        for s in (".arrow", ".bin", ".parquet", ".safetensors", ".model"))
LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TAUGHT_TASK_TYPES = ("extractive question answering", "yes-no question answering", "natural language inference")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rows_for(rows: str | dict, split: str) -> list[dict]:
    """The rows of one config and split (its ``rows`` entry in the YAML file, alone or with
    ``relabel`` and ``repeat``): a training split gets every row, other splits two."""
    spec = {"rows": rows} if isinstance(rows, str) else rows
    name = spec["rows"]
    if name == "ctga_v1":
        rows = _ctga_v1_rows()
    elif name.startswith("synthetic/"):
        rows = _synthetic_rows(name.split("/", 1)[1])
    else:
        kind, stem = name.split("/", 1)
        rows = _jsonl(EMBEDDED_DIR / kind / f"{stem}.jsonl")
    for column, template in spec.get("relabel", {}).items():
        rows = [{**row, column: template.format(row[column])} for row in rows]
    rows = rows * spec.get("repeat", 1)
    return rows if split.startswith("train") else rows[:2]


def _synthetic_rows(dataset: str) -> list[dict]:
    """Bonito-style tasks (input, output) on the passages of a dataset, as the published sets are."""
    passages = [r["input"] for r in _jsonl(EMBEDDED_DIR / "unannotated" / f"{dataset}.jsonl")][:8]
    return [{"input": f"{p}\nQuestion: what is this passage about?", "output": p.split(".")[0]}
            for p in passages]


def _ctga_v1_rows() -> list[dict]:
    """Rows in the columns of BatsResearch/ctga-v1 (the authors' builder's), valid Bonito pairs."""
    rows = []
    for i, row in enumerate(_jsonl(EMBEDDED_DIR / "ctga" / "squad.jsonl")[:8]):
        task_type = "extractive question answering" if i % 2 == 0 else "yes-no question answering"
        instruction, response = f"{{{{context}}}}\n\n{row['question']}", row["answers"]["text"][0]
        rows.append({"context": row["context"], "task_input": instruction, "task_output": response,
                     "dataset": "squad", "dataset_config": None, "task_type": task_type,
                     "input": bonito_input(row["context"], task_type),
                     "output": bonito_output(instruction, response)})
    return rows


def _readme(configs: list[dict]) -> str:
    return "---\n" + yaml.safe_dump({"configs": configs}, sort_keys=False) + "---\n"


def _split_names(rev: dict) -> list[str]:
    return rev.get("splits") or [rev["split"]]


def write_save_to_disk(rev: dict, out: Path) -> None:
    import datasets

    configs = []
    for config, rows in rev["configs"].items():
        split = rev["split"]
        folder = rev["folder"].format(config=config, split=split)
        datasets.Dataset.from_list(rows_for(rows, split)).save_to_disk(str(out / folder))
        configs.append({"config_name": config, "data_files": [{"split": split, "path": f"{folder}/*.arrow"}]})
    (out / "README.md").write_text(_readme(configs))


def write_parquet(rev: dict, out: Path, repo_name: str) -> None:
    import pandas as pd

    compression = rev.get("compression", "snappy")
    compression = None if compression == "none" else compression
    configs = []
    for config, rows in rev["configs"].items():
        data_files = []
        for split in _split_names(rev):
            path = rev["path"].format(config=config, split=split, name=repo_name)
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows_for(rows, split)).to_parquet(out / path, index=False, compression=compression)
            data_files.append({"split": split, "path": path})
        configs.append({"config_name": config, "data_files": data_files})
    if rev.get("readme"):
        (out / "README.md").write_text(_readme(configs))


def write_files(rev: dict, out: Path) -> None:
    """One file per split at ``path``, JSON lines or CSV by its suffix, and a card without
    ``configs:``: the datasets library names the splits from the file names, as for a data-only
    repository on the Hub."""
    import pandas as pd

    for split in _split_names(rev):
        path = out / rev["path"].format(split=split)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = rows_for(rev["rows"], split)
        if path.suffix == ".csv":
            pd.DataFrame(rows).to_csv(path, index=False)
        elif path.suffix == ".jsonl":
            path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        else:
            raise ValueError(f"{path.name}: the files layout writes .jsonl or .csv")
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A data-only dataset\n")


def write_script(out: Path, repo_name: str) -> None:
    (out / f"{repo_name}.py").write_text(
        '"""A loading script, as script-based Hub datasets have (datasets 4+ refuses to run it)."""\n'
        "import datasets\n\n\nclass Builder(datasets.GeneratorBasedBuilder):\n    pass\n")
    (out / "README.md").write_text("---\nlanguage: [en]\n---\n# A script-based dataset\n")


def _tiny_weights(spec: dict, cache: dict, work: Path) -> Path:
    """A tiny random model directory (built once per spec and session), taught the Bonito format
    for ``bonito_format_steps`` steps where the spec asks."""
    from ..prepare.models import prepare_model

    key = json.dumps(spec, sort_keys=True)
    if key not in cache:
        tiny = {k: v for k, v in spec.items() if k != "bonito_format_steps"}
        cache[key] = prepare_model({"tiny": tiny}, work / f"tiny{len(cache)}")
        if spec.get("bonito_format_steps"):
            _teach_bonito_format(cache[key], spec["bonito_format_steps"])
    return cache[key]


def _teach_bonito_format(model_dir: Path, steps: int, batch_size: int = 8) -> None:
    """Train a tiny random model in full to answer a Bonito input with one fixed task (the
    instruction with its {{context}} placeholder, the pipe, a response, EOS), over every embedded
    passage: a random base never writes `instruction <|pipe|> response`, so after the rehearsal's
    few training steps its generator's every task was unparsable and the funnel stopped generation.
    (Eight ctga-v1 rows, memorised, did not carry over to new passages: 3 of 16 parsed.)"""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # matrices this small keep a second thread spinning
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    passages = [r["input"] for path in sorted((EMBEDDED_DIR / "unannotated").glob("*.jsonl")) for r in _jsonl(path)]
    task = bonito_output("{{context}}\nQuestion: what is this passage about?", "the passage")
    texts = [bonito_input(p, TAUGHT_TASK_TYPES[i % len(TAUGHT_TASK_TYPES)]) + task + tokenizer.eos_token
             for i, p in enumerate(passages)]
    rng = random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        batch = tokenizer(rng.sample(texts, batch_size), return_tensors="pt", padding=True)
        labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(model_dir, safe_serialization=True)
    torch.set_num_threads(threads)


def _save_shards(state: dict, out: Path, fmt: str, shards: int = 2) -> None:
    """Weights in `shards` files with the index file transformers reads, in the Hub's names."""
    import torch
    from safetensors.torch import save_file

    names = sorted(state)
    groups = [names[i::shards] for i in range(shards)]
    stem, suffix, index = {"safetensors": ("model", "safetensors", "model.safetensors.index.json"),
                           "bin": ("pytorch_model", "bin", "pytorch_model.bin.index.json")}[fmt]
    weight_map = {}
    for i, group in enumerate(groups, 1):
        filename = f"{stem}-{i:05d}-of-{shards:05d}.{suffix}"
        part = {k: state[k].contiguous() for k in group}
        if fmt == "safetensors":
            save_file(part, str(out / filename), metadata={"format": "pt"})
        else:
            torch.save(part, out / filename)
        weight_map.update(dict.fromkeys(group, filename))
    total = sum(t.numel() * t.element_size() for t in state.values())
    (out / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def write_model(rev: dict, out: Path, tiny_specs: dict, cache: dict, work: Path) -> None:
    import torch
    from safetensors.torch import load_file

    tiny_dir = _tiny_weights(tiny_specs[rev["tiny"]], cache, work)
    dtype = getattr(torch, rev.get("dtype", "float32"))
    state = {k: v.to(dtype) for k, v in load_file(str(tiny_dir / "model.safetensors")).items()}
    for path in tiny_dir.iterdir():
        if path.suffix != ".safetensors":
            shutil.copy(path, out / path.name)
    for fmt in rev["weights"]:
        _save_shards(state, out, fmt)
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A tiny random stand-in\n")


def write_adapter(rev: dict, out: Path, base_dir: Path, base_id: str) -> None:
    """A LoRA on all linear projections, saved as a pickle under `subfolder`, beside the root
    files of an uploaded training checkpoint."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=LORA_MODULES, task_type="CAUSAL_LM"))
    with torch.no_grad():  # LoRA B starts at zero; a non-zero one makes the adapter change outputs
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    sub = out / rev["subfolder"]
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        state = load_file(str(Path(tmp) / "adapter_model.safetensors"))
        config = json.loads((Path(tmp) / "adapter_config.json").read_text())
    sub.mkdir(parents=True)
    torch.save(state, sub / "adapter_model.bin")
    config["base_model_name_or_path"] = base_id
    (sub / "adapter_config.json").write_text(json.dumps(config, indent=2))
    (sub / "README.md").write_text("---\nlibrary_name: peft\n---\n")
    (out / "README.md").write_text("---\nlibrary_name: peft\nlicense: apache-2.0\n---\n")
    (out / "trainer_state.json").write_text(json.dumps({"global_step": 1, "log_history": []}))
    shutil.copy(base_dir / "tokenizer.json", out / "tokenizer.json")


def build(root: str | Path, spec_path: str | Path = SPEC_PATH) -> Path:
    """Write every repository of the spec under root (replacing what is there)."""
    spec = yaml.safe_load(Path(spec_path).read_text())
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "tokens.json").write_text(json.dumps(spec["tokens"]))
    (root / "gone.json").write_text(json.dumps(spec.get("gone", {})))
    tiny_cache: dict = {}
    model_dirs: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as work:
        for folder, repo_type in (("datasets", "dataset"), ("models", "model")):
            for repo_id, repo in spec.get(folder, {}).items():
                repo_dir = root / folder / repo_id
                repo_dir.mkdir(parents=True)
                if repo.get("gated"):
                    (repo_dir / "repo.json").write_text(json.dumps({"gated": repo["gated"]}))
                for revision, rev in repo.items():
                    if revision == "gated":
                        continue
                    out = repo_dir / quote(revision, safe="")
                    out.mkdir()
                    (out / ".gitattributes").write_text(GITATTRIBUTES)
                    name = repo_id.split("/")[1]
                    layout = rev["layout"]
                    if layout == "save_to_disk":
                        write_save_to_disk(rev, out)
                    elif layout == "parquet":
                        write_parquet(rev, out, name)
                    elif layout == "files":
                        write_files(rev, out)
                    elif layout == "script":
                        write_script(out, name)
                    elif layout == "model":
                        write_model(rev, out, spec["tiny_models"], tiny_cache, Path(work))
                        model_dirs.setdefault(repo_id, out)
                    elif layout == "adapter":
                        write_adapter(rev, out, model_dirs[rev["base"]], rev["base"])
                    else:
                        raise ValueError(f"{spec_path}: {repo_type} {repo_id}@{revision}: unknown layout {layout!r}")
    return root
