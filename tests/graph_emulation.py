"""A CUDA graph's contract, checked on the CPU: a test stand-in for ``icl_mech.graphs._captured``.

A captured graph replays its kernels on the memory addresses it was recorded with. A tensor the
function reads from outside itself (parameters, optimizer state, evaluation sets, the pool) must
therefore still live at the same address at every replay: if the trainer re-points a parameter
after capture (``param.data = ...``), the real graph silently reads the old memory. Here the
"capture" runs the function eagerly under a dispatch mode that lists the addresses of the
outside tensors every operation reads, and every "replay" runs it again and fails if that list
changed. So the captured path of the trainer (no restacking, gradients kept, every member
evaluated, the warm-up's state restored) runs in CI, checked for what a CPU can check of a graph.
The same dispatch mode refuses the operations that would make the host wait for a GPU (reading a
value to Python, shapes that depend on data), which a real capture cannot record. Python side
effects run at every replay here, which a real graph would not repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from icl_mech import graphs, trainer


aten = torch.ops.aten

#: Operations that wait for the device on CUDA: a value read to the host (``.item()``, ``bool(t)``),
#: or an output whose shape depends on the data.
_SYNCING = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
}
#: Indexing operations that sync when an index is a boolean mask (it becomes ``nonzero``).
_MASKABLE = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}


def _syncs(func, args: tuple, kwargs: dict) -> bool:
    """Whether the operation makes the host wait for the device. ``multinomial`` is one operator
    here, but for one draw or draws without replacement ATen's implementation checks its weights
    with ``.item()`` inside it (torch 2.13, ``multinomial_out``), where no dispatch mode sees it."""
    if func in _SYNCING:
        return True
    if func in _MASKABLE:
        return any(index is not None and index.dtype == torch.bool for index in args[1])
    if func is aten.multinomial.default:
        n_draws = args[1]
        replacement = args[2] if len(args) > 2 else kwargs.get("replacement", False)
        return n_draws == 1 or not replacement
    return False


class HostSync(AssertionError):
    """A captured function did something that makes the host wait for the device."""


class _OutsideReads(TorchDispatchMode):
    """The data addresses of operation inputs whose storage the function did not create; raises
    ``HostSync`` at an operation that would synchronize on CUDA."""

    def __init__(self) -> None:
        super().__init__()
        self.created: set[int] = set()
        self.outside: set[int] = set()
        self.addresses: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = tree_flatten((args, kwargs or {}))[0]
        if _syncs(func, args, kwargs or {}):
            raise HostSync(f"{func} would make the host wait for the device inside a captured graph")
        # lift_fresh takes a tensor literal the function's Python just made (``x[i] = 0.0``)
        fresh = func is aten.lift_fresh.default
        for value in inputs:
            if isinstance(value, torch.Tensor) and not fresh and _storage(value) not in self.created:
                self.outside.add(_storage(value))
                self.addresses.append(value.data_ptr())
        result = func(*args, **(kwargs or {}))
        for value in tree_flatten(result)[0]:
            if isinstance(value, torch.Tensor) and _storage(value) not in self.outside:
                self.created.add(_storage(value))
        return result


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def outside_addresses(function: Callable[[], None]) -> list[int]:
    """Run ``function`` once; the addresses of the outside tensors it read, in order."""
    with _OutsideReads() as reads:
        function()
    return reads.addresses


#: What ``torch.cuda.graph`` raises on leaving a capture in which an operation failed (CUDA's
#: cudaErrorStreamCaptureInvalidated, as torch words it).
CAPTURE_ENDED = "CUDA error: operation failed due to a previous error during capture"

#: True while ``emulated_capture`` records (``torch.cuda.is_current_stream_capturing()`` here).
capturing = False


class AddressesMoved(AssertionError):
    """A replay read an outside tensor at another address than the capture did."""


def emulated_capture(
    function: Callable[[], None], generators: Sequence[torch.Generator], device: torch.device
) -> Callable[[], None]:
    """``graphs._captured`` on the CPU: the warm-up runs, a recorded run, and replays that check
    they read what the recorded run read, where it read it. An operation that raises while it
    records fails the capture as on CUDA: with ``CAPTURE_ENDED``, its own error the context."""
    for _ in range(graphs.WARMUP_RUNS):
        function()
    global capturing
    capturing = True
    try:
        recorded = outside_addresses(function)
    except RuntimeError:
        raise RuntimeError(CAPTURE_ENDED)
    finally:
        capturing = False

    def replay() -> None:
        if outside_addresses(function) != recorded:
            raise AddressesMoved("a replay read tensors at other addresses than the capture recorded")

    return replay


def emulate_graphs(monkeypatch) -> None:
    """Make the trainer take its CUDA-graph path on the CPU, with ``emulated_capture`` (and no
    device to synchronize with when a capture fails)."""
    monkeypatch.setattr(graphs, "_captured", emulated_capture)
    monkeypatch.setattr(graphs.torch.cuda, "synchronize", lambda device=None: None)
    for module in (graphs, trainer):
        monkeypatch.setattr(module, "captures", lambda device, capture: capture)
