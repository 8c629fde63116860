"""Rank classification (docs/protocol.md, section 8.2): the score of an answer choice is the summed
log-probability of its tokens given the prompt; the prediction is the best-scoring choice. The
evaluation ranks answer choices so; backtranslation's ranked rating ranks "Score: 1" to "Score: 5".

``score_choices`` packs one example's prompt and all its choices into a single sequence: each
choice sits after the prompt with the positions it would have right after it, and a block mask
lets it see the prompt and itself only. The prompt is run once instead of once per choice, many
examples share a forward pass, and the vocabulary projection runs only at the positions that
predict a choice token. ``score_choices_separately`` is the paper's way (one sequence per
choice), kept as the reference the tests and the benchmark compare against.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .backends import token_batches

TokenIds = list[int]


def _log_probs_at(model, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) from final hidden states (N, H) and target ids (N,)."""
    logits = model.get_output_embeddings()(hidden).float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)


@torch.inference_mode()
def score_choices(model, prompts: Sequence[TokenIds], choices: Sequence[Sequence[TokenIds]],
                  batch_tokens: int, pad_id: int = 0, progress=None) -> list[list[float]]:
    """Summed log-probability of every choice of every example, all choices of an example in one
    packed sequence. ``prompts[i]`` are the prompt ids of example i (BOS included) and
    ``choices[i]`` the token ids of each of its choices."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    lengths = [len(p) + sum(len(c) for c in cs) for p, cs in zip(prompts, choices)]
    scores = [[0.0] * len(cs) for cs in choices]
    for batch in token_batches(lengths, batch_tokens):
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        positions = torch.zeros((len(batch), width), dtype=torch.long)
        segment = torch.full((len(batch), width), -1, dtype=torch.long)  # -1 pad, 0 prompt, j+1 choice j
        rows, cols, targets, owners = [], [], [], []
        for b, i in enumerate(batch):
            prompt = prompts[i]
            ids[b, :len(prompt)] = torch.tensor(prompt)
            positions[b, :len(prompt)] = torch.arange(len(prompt))
            segment[b, :len(prompt)] = 0
            start = len(prompt)
            for j, choice in enumerate(choices[i]):
                end = start + len(choice)
                ids[b, start:end] = torch.tensor(choice)
                positions[b, start:end] = torch.arange(len(prompt), len(prompt) + len(choice))
                segment[b, start:end] = j + 1
                # token k of the choice is predicted at the position before it
                predictors = [len(prompt) - 1, *range(start, end - 1)][:len(choice)]
                rows += [b] * len(choice)
                cols += predictors
                targets += choice
                owners += [(i, j)] * len(choice)
                start = end
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        same = segment[:, :, None] == segment[:, None, :]
        visible = causal & (same | (segment[:, None, :] == 0))
        mask = torch.zeros(visible.shape, dtype=dtype).masked_fill(~visible, torch.finfo(dtype).min)
        hidden = model.base_model(input_ids=ids.to(device), attention_mask=mask[:, None].to(device),
                                  position_ids=positions.to(device), use_cache=False).last_hidden_state
        picked = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
        token_scores = _log_probs_at(model, picked, torch.tensor(targets, device=device)).tolist()
        for (i, j), value in zip(owners, token_scores):
            scores[i][j] += value
        if progress is not None:
            progress.update(len(batch))
    return scores


@torch.inference_mode()
def score_choices_separately(model, prompts: Sequence[TokenIds], choices: Sequence[Sequence[TokenIds]],
                             batch_tokens: int, pad_id: int = 0) -> list[list[float]]:
    """The same scores computed the paper's way: one right-padded sequence per (example,
    choice), full-vocabulary log-softmax at every position."""
    device = next(model.parameters()).device
    pairs = [(i, j) for i, cs in enumerate(choices) for j in range(len(cs))]
    lengths = [len(prompts[i]) + len(choices[i][j]) for i, j in pairs]
    scores = [[0.0] * len(cs) for cs in choices]
    for batch in token_batches(lengths, batch_tokens):
        width = max(lengths[k] for k in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for b, k in enumerate(batch):
            i, j = pairs[k]
            sequence = prompts[i] + choices[i][j]
            ids[b, :len(sequence)] = torch.tensor(sequence)
            attention[b, :len(sequence)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
        for b, k in enumerate(batch):
            i, j = pairs[k]
            start, choice = len(prompts[i]), choices[i][j]
            picked = log_probs[b, start - 1:start - 1 + len(choice)].gather(
                -1, torch.tensor(choice, device=device)[:, None])
            scores[i][j] = float(picked.sum())
    return scores
