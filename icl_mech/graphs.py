"""The training step and the evaluation pass as CUDA graphs: recorded once, then replayed.

On a GPU this model is tiny, so a step's time is the launch latency of a few hundred small kernels
and the Python that issues them, not arithmetic. A CUDA graph replays the whole step (sampling on
the device, forward, loss, backward, optimizer update) as one launch. Off CUDA, and wherever
capture fails, the same function runs eagerly, so the CPU path is exactly the code that is captured.

Capture needs the function to run a few times first (to allocate gradients, optimizer state and
library workspaces), which would train the model. ``replayable`` therefore saves the parameters,
the optimizer's state and the generators' states before those warm-up runs and puts them back
(in place, where the graph reads them) afterwards: the first replay is the step eager training
would take. Random draws replay correctly because every generator the function uses is registered
with the graph (CUDA's graph-safe RNG: each replay advances the generator's offset by what the
captured kernels consume, so a replay draws what the same eager calls would, and ``get_state``
after replays is what a checkpoint saves).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

#: Eager runs before capture: the first allocates gradients and optimizer state, the next ones run
#: with everything allocated (what the graph records).
WARMUP_RUNS = 3


def captures(device: torch.device, capture: bool) -> bool:
    """Whether ``replayable`` records graphs: asked to (``capture``), and on CUDA."""
    return capture and device.type == "cuda"


def replayable(
    function: Callable[[], None],
    device: torch.device,
    *,
    generators: Sequence[torch.Generator] = (),
    parameters: Sequence[Tensor] = (),
    optimizer: torch.optim.Optimizer | None = None,
    capture: bool = True,
) -> Callable[[], None]:
    """``function`` itself, or (``captures(device, capture)``) a CUDA graph of it that does the
    same when called.

    ``function`` must not synchronize with the host (no ``.item()``, no data-dependent Python
    branches); what it computes is read from the tensors it last produced, which every replay
    overwrites. ``parameters``, ``optimizer`` and ``generators`` are the state it changes,
    restored after the warm-up runs. If capture fails (an operation that cannot be captured),
    this warns and returns ``function``, with that state restored the same way.
    """
    if not captures(device, capture):
        return function
    saved_parameters = [parameter.detach().clone() for parameter in parameters]
    saved_optimizer = _optimizer_tensors(optimizer, clone=True)
    saved_generators = [generator.get_state() for generator in generators]
    try:
        return _captured(function, generators)
    except RuntimeError as error:
        warnings.warn(f"running eagerly: capturing a CUDA graph failed ({error})", stacklevel=2)
        torch.cuda.synchronize(device)
        return function
    finally:
        with torch.no_grad():
            for parameter, saved in zip(parameters, saved_parameters):
                parameter.copy_(saved)
            for key, tensor in _optimizer_tensors(optimizer, clone=False).items():
                if key in saved_optimizer:
                    tensor.copy_(saved_optimizer[key])
                else:  # created by the warm-up: zero, as a fresh optimizer's state starts
                    tensor.zero_()
        for generator, state in zip(generators, saved_generators):
            generator.set_state(state)


def _captured(function: Callable[[], None], generators: Sequence[torch.Generator]) -> Callable[[], None]:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP_RUNS):
            function()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    for generator in generators:
        graph.register_generator_state(generator)
    # thread_local: the checkpoint writer's thread may wait on CUDA events meanwhile
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        function()
    return graph.replay


def _optimizer_tensors(optimizer: torch.optim.Optimizer | None, clone: bool) -> dict[tuple[int, str], Tensor]:
    """Every tensor of the optimizer's per-parameter state, keyed by (parameter id, name)."""
    if optimizer is None:
        return {}
    return {
        (id(parameter), name): value.detach().clone() if clone else value
        for parameter, state in optimizer.state.items()
        for name, value in state.items()
        if torch.is_tensor(value)
    }
