"""The authors' training loop, re-created from PAPER.md's description as the baseline to beat.

Written for this benchmark (nothing copied): a per-sample Python ``Dataset`` that builds one
bursty sequence per ``__getitem__`` (one-hot labels concatenated per sample) batched by a
``DataLoader``; a plain-torch model with LayerNorm, one causal single-head attention over every
position (no biases, logits not scaled), and a 3-layer ReLU MLP (65 -> 512 -> 512 -> 1) on the
query's normalised vector plus its attention output; logistic loss; plain SGD at lr 0.01.
``AuthorsLoop`` runs it on the CPU (the CPU table) or as the authors ran it on a GPU (the CUDA table).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

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


class AuthorsLoop:
    """The authors' trainer: a ``DataLoader`` over ``sequences`` bursty sequences (one pass is an
    epoch), the model and SGD on ``device``, and their once-per-epoch evaluation.

    ``num_workers`` worker processes build the batches; on CUDA they land in pinned memory and are
    copied without blocking, the way the authors ran it on a GPU (4 workers; kept alive between
    epochs, which only spares the baseline their start-up). ``eval_sets`` fixed sets of
    ``eval_size`` sequences from the same items (the paper's ICL and IWL sets: 2) are made once
    and kept on the device.
    """

    def __init__(
        self,
        sequences: int,
        K: int = 20000,
        N: int = 100,
        batch_size: int = 128,
        *,
        device: str = "cpu",
        num_workers: int = 0,
        eval_sets: int = 0,
        eval_size: int = 2000,
    ):
        self.device = torch.device(device)
        self.loader = DataLoader(
            BurstySequences(K, N, 63, 2, sequences), batch_size=batch_size, num_workers=num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=num_workers > 0,
        )
        evaluation = DataLoader(BurstySequences(K, N, 63, 2, eval_sets * eval_size), batch_size=eval_size)
        self.eval_sets = [(tokens.to(self.device), targets.to(self.device)) for tokens, targets in evaluation]
        self.model = AuthorsModel().to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, weight_decay=1e-10)

    def steps(self) -> Iterator[None]:
        """One pass over the data (an epoch): one training step per ``next``."""
        for tokens, targets in self.loader:
            tokens = tokens.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            loss = F.binary_cross_entropy_with_logits(self.model(tokens), targets)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            yield

    @torch.no_grad()
    def evaluate(self) -> list[tuple[float, float]]:
        """Loss and accuracy on each evaluation set, read back to Python as a training log does."""
        results = []
        for tokens, targets in self.eval_sets:
            logits = self.model(tokens)
            loss = F.binary_cross_entropy_with_logits(logits, targets)
            results.append((loss.item(), ((logits > 0).float() == targets).float().mean().item()))
        return results

    def epoch(self) -> None:
        """Train one pass over the data, then evaluate."""
        for _ in self.steps():
            pass
        self.evaluate()


def authors_steps(n_steps: int, K: int = 20000, N: int = 100, batch_size: int = 128) -> Iterator[None]:
    """The authors' loop on the CPU, one training step per ``next`` (no workers, no evaluation)."""
    return AuthorsLoop(n_steps * batch_size, K, N, batch_size).steps()
