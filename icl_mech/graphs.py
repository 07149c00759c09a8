"""The training step and the evaluation pass as CUDA graphs: recorded once, then replayed.

On a GPU this model is tiny, so a step's time is the launch latency of a few hundred small kernels
and the Python that issues them, not arithmetic. A CUDA graph replays the whole step (sampling on
the device, forward, loss, backward, optimizer update) as one launch. Off CUDA, and wherever
capture fails, ``CaptureError`` says to rerun eagerly (``--eager``): the CPU path is exactly the
code that is captured.

Capture needs the function to run a few times first (to allocate gradients, optimizer state and
library workspaces), which would train the model. ``replayable`` therefore saves the parameters,
the optimizer's state and the generators' states before those warm-up runs and puts them back
(in place, where the graph reads them) afterwards: the first replay is the step eager training
would take. Random draws replay correctly because every generator the function uses is registered
with the graph (CUDA's graph-safe RNG: each replay advances the generator's offset by what the
captured kernels consume, so a replay draws what the same eager calls would, and ``get_state``
after replays is what a checkpoint saves).

Streams and the capture are made on ``device`` itself, which the trainer also makes the current
CUDA device (``icl_mech.devices.current``): work on another device than the current one would not
be captured, and the graph would replay nothing.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from icl_mech.errors import CaptureError

#: Eager runs before capture: the first allocates gradients and optimizer state, the next ones run
#: with everything allocated (what the graph records).
WARMUP_RUNS = 3

#: Graphs this process has recorded: ``python -m benchmarks --device cuda`` checks that each
#: timed run recorded its own, so eager timings are never reported as the captured path's.
recorded = 0

#: The start of the warning a capturable optimizer gives when it steps outside a capture.
CAPTURABLE_UNCAPTURED = "This instance was constructed with capturable=True"

#: torch's own source, skipped when naming where a capture failed.
_TORCH_SOURCE = str(Path(torch.__file__).parent)


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
    restored after the warm-up runs, and restored the same way when capture fails (an operation
    that cannot be captured), which raises ``CaptureError`` naming the failing operation, with the
    error it raised as its cause. It does not fall back to running
    ``function`` eagerly in this process: a failed capture can leave a registered generator marked
    as capturing (PyTorch issue 171263), so the next eager draw would raise anyway.
    """
    if not captures(device, capture):
        return function
    saved_parameters = [parameter.detach().clone() for parameter in parameters]
    saved_optimizer = _optimizer_tensors(optimizer, clone=True)
    saved_generators = [generator.get_state() for generator in generators]
    global recorded
    try:
        replay = _captured(function, generators, device)
        recorded += 1
        return replay
    except RuntimeError as error:
        torch.cuda.synchronize(device)
        raise CaptureError(
            f"capturing a CUDA graph failed {_failing_operation(error)}; rerun with --eager "
            "(capture=False from Python), adding --resume to continue from what was saved"
        ) from error
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


def _captured(
    function: Callable[[], None], generators: Sequence[torch.Generator], device: torch.device
) -> Callable[[], None]:
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), warnings.catch_warnings():
        # capturable Adam warns when it steps outside a capture, as the warm-up runs must
        warnings.filterwarnings("ignore", message=CAPTURABLE_UNCAPTURED, category=UserWarning)
        for _ in range(WARMUP_RUNS):
            function()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    for generator in generators:
        graph.register_generator_state(generator)
    current = torch.cuda.current_stream(device)
    try:
        # thread_local: the checkpoint writer's thread may wait on CUDA events meanwhile
        with torch.cuda.graph(graph, stream=torch.cuda.Stream(device), capture_error_mode="thread_local"):
            function()
    finally:  # when ending a failed capture raises, torch.cuda.graph leaves its capture stream current
        torch.cuda.set_stream(current)
    return graph.replay


def _failing_operation(error: BaseException) -> str:
    """Where a capture failed and why, in one line: the first error raised (when an operation fails
    inside ``torch.cuda.graph``, ending the capture raises "operation failed due to a previous error
    during capture", which keeps the operation's own error only as its ``__context__``) and the
    last line outside torch that it passed through (the operation's call in our code)."""
    first, seen = error, {id(error)}
    while (earlier := first.__cause__ or first.__context__) is not None and id(earlier) not in seen:
        first, seen = earlier, seen | {id(earlier)}
    ours = [frame for frame in traceback.extract_tb(first.__traceback__) if not frame.filename.startswith(_TORCH_SOURCE)]
    message = (str(first).splitlines() or [type(first).__name__])[0]
    if not ours:
        return f"({message})"
    frame = ours[-1]
    where = Path(frame.filename)
    return f"at {where.parent.name}/{where.name}:{frame.lineno} in {frame.name} `{frame.line}` ({message})"


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
