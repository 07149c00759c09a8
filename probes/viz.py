"""circuitsvis views of every head's attention on one evaluation sequence, working offline.

circuitsvis's ``str()`` of a view imports its script from a CDN; ``.local_src`` embeds the
bundled script shipped in the package. Files and notebooks here always use ``.local_src``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from circuitsvis.attention import attention_heads
from circuitsvis.utils.render import RenderedHTML
from transformer_lens import HookedTransformer

from icl_mech.errors import ConfigError
from icl_mech.sampler import Batch
from probes.head_scores import attention_patterns


def token_labels(batch: Batch, index: int) -> list[str]:
    """``#item:label`` for each context token and ``QUERY #item:?`` for the query."""
    items = batch.item_ids[index].tolist()
    labels = batch.labels[index].tolist()
    context = [f"#{item}:{label}" for item, label in zip(items[:-1], labels[:-1])]
    return [*context, f"QUERY #{items[-1]}:?"]


def head_patterns(model: HookedTransformer, batch: Batch, index: int = 0) -> dict[str, Any]:
    """circuitsvis ``attention_heads`` arguments (JSON-ready: ``attention`` as nested lists
    ``[head dest src]``, ``tokens``, ``attention_head_names`` ``L{layer}H{head}``) for every head's
    pattern on sequence ``index``."""
    if not 0 <= index < len(batch):
        raise ConfigError(f"sequence index {index} is out of range: the set has {len(batch)} sequences")
    patterns = attention_patterns(model, batch[index : index + 1])[:, 0]  # layer head dest src
    n_layers, n_heads = patterns.shape[:2]
    names = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
    return {
        "attention": patterns.flatten(0, 1).cpu().tolist(),
        "tokens": token_labels(batch, index),
        "attention_head_names": names,
    }


def head_patterns_view(model: HookedTransformer, batch: Batch, index: int = 0) -> RenderedHTML:
    """Every head's attention pattern (heads named ``L{layer}H{head}``) on sequence ``index``."""
    return attention_heads(**head_patterns(model, batch, index))


def write_view(view: RenderedHTML, path: str | Path, title: str) -> Path:
    """Save ``view`` as a self-contained HTML page (bundled script, no network)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f"<body><h3>{html.escape(title)}</h3>\n{view.local_src}\n</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path
