"""The authors' training loop, re-created from PAPER.md's description as the baseline to beat.

Written for this benchmark (nothing copied): a per-sample Python ``Dataset`` that builds one
bursty sequence per ``__getitem__`` (one-hot labels concatenated per sample) batched by a
``DataLoader``; a plain-torch model with LayerNorm, one causal single-head attention over every
position (no biases, logits not scaled), and a 3-layer ReLU MLP (65 -> 512 -> 512 -> 1) on the
query's normalised vector plus its attention output; logistic loss; plain SGD at lr 0.01.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset


class BurstySequences(Dataset):
    """Sequence i is drawn afresh from the K items on every access, one sample at a time."""

    def __init__(self, K: int, N: int, D: int, L: int, length: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.items = torch.randn(K, D, generator=generator) / math.sqrt(D)
        self.labels = torch.randperm(K, generator=generator) % L
        self.N, self.L, self.length = N, L, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        context = torch.randint(len(self.items), (self.N - 1,))
        query = torch.randint(len(self.items), ())
        if not (context == query).any():  # bursty: the query always occurs in the context
            query = context[torch.randint(self.N - 1, ())]
        ids = torch.cat([context, query[None]])
        one_hot = F.one_hot(self.labels[context], self.L).float()
        label_part = torch.cat([one_hot, torch.zeros(1, self.L)])
        return torch.cat([self.items[ids], label_part], dim=1), self.labels[query].float()


class AuthorsModel(nn.Module):
    """LayerNorm, full causal single-head attention, MLP on the query (the paper's minimal model)."""

    def __init__(self, d_token: int = 65, d_hidden: int = 512):
        super().__init__()
        self.norm = nn.LayerNorm(d_token)
        self.query = nn.Linear(d_token, d_token, bias=False)
        self.key = nn.Linear(d_token, d_token, bias=False)
        self.value = nn.Linear(d_token, d_token, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(d_token, d_hidden), nn.ReLU(),
            nn.Linear(d_hidden, d_hidden), nn.ReLU(),
            nn.Linear(d_hidden, 1),
        )

    def forward(self, tokens: Float[Tensor, "batch pos d_token"]) -> Float[Tensor, " batch"]:
        normed = self.norm(tokens)
        scores = self.query(normed) @ self.key(normed).transpose(1, 2)  # scale 1.0
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=tokens.device).tril()
        attention = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1) @ self.value(normed)
        return self.mlp(normed[:, -1] + attention[:, -1])[:, 0]


def authors_steps(n_steps: int, K: int = 20000, N: int = 100, batch_size: int = 128):
    """A generator that runs one training step of the authors' loop per ``next``."""
    loader = DataLoader(BurstySequences(K, N, 63, 2, n_steps * batch_size), batch_size=batch_size)
    model = AuthorsModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, weight_decay=1e-10)
    for tokens, targets in loader:
        loss = F.binary_cross_entropy_with_logits(model(tokens), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        yield
