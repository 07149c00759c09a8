"""What a command line names an ablation by: the circuits (``CIRCUIT_NAMES``), the ablation
methods (``METHODS``) and heads as ``LAYER.HEAD`` (``parse_heads``).

They live apart from the code that finds and ablates circuits (``probes.circuits``,
``probes.ablation``, which import torch and TransformerLens) so that building the ``ablate`` and
``independence`` parsers, and so ``--help``, imports neither.
"""

from __future__ import annotations

from icl_mech.errors import ConfigError

#: An attention head as (layer, head index).
Head = tuple[int, int]

#: The circuits ``probes.circuits.CIRCUITS`` finds, in its order.
CIRCUIT_NAMES = ("induction", "mlp", "previous-token", "memorization-path", "icl-path")

#: What an ablated activation is replaced with (``probes.ablation``'s module docstring).
METHODS = ("zero", "mean", "resample")


def parse_heads(text: str) -> list[Head]:
    """``"0.0,1.2"`` -> ``[(0, 0), (1, 2)]`` (the ``--heads`` flag)."""
    heads = []
    for part in text.split(","):
        layer, dot, head = part.strip().partition(".")
        if not (dot and layer.isdigit() and head.isdigit()):
            raise ConfigError(f"--heads expects LAYER.HEAD[,LAYER.HEAD...] such as 0.0,1.2; got {text!r}")
        heads.append((int(layer), int(head)))
    return heads
