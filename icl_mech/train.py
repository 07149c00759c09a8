"""Training: logistic loss on the query logit, dense checkpoints, evaluation, resume.

The loop is the only place that trains; it knows nothing of plotting or the command line.
Order at every step t: evaluate (at eval steps) -> checkpoint (at checkpoint steps) -> update.
So the metrics and the checkpoint of step t both describe the model after t updates, and the
data of update t+1 comes from the generator state saved with checkpoint t.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from icl_mech import storage
from icl_mech.config import RunConfig, TrainConfig
from icl_mech.errors import ConfigError, RunError
from icl_mech.model import build_model, query_logits
from icl_mech.run import Run, load_run
from icl_mech.sampler import TRAINING_MODES, Batch, make_eval_sets, sample_batch, stream_generator, training_pool

#: Fields a resumed run may change: it can be trained longer, or stopped at another accuracy.
RESUMABLE_CHANGES = ("steps", "stop_icl_acc")


def checkpoint_steps(total: int, every: int) -> list[int]:
    """0, 1, 2, 4, ... (log-spaced) below ``every``, then every ``every`` steps, and ``total``."""
    log_spaced = [0] + [2**i for i in range(every.bit_length()) if 2**i < min(every, total + 1)]
    return sorted(set(log_spaced) | set(range(0, total + 1, every)) | {total})


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:N]``; a CUDA request without a CUDA device is a ConfigError."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected 'cpu' or 'cuda[:N]'") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; expected 'cpu' or 'cuda[:N]'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but no CUDA device is available; use 'cpu'")
    return device


def logistic_loss_and_accuracy(
    logits: Float[Tensor, " batch"], targets: Int[Tensor, " batch"]
) -> tuple[Tensor, Tensor]:
    """Binary cross-entropy on the logit (label 1 is the positive class) and accuracy."""
    loss = F.binary_cross_entropy_with_logits(logits, targets.float())
    return loss, ((logits > 0).long() == targets).float().mean()


@torch.no_grad()
def evaluate(model: HookedTransformer, batch: Batch) -> tuple[float, float]:
    """Loss and accuracy of the query prediction on a whole evaluation set."""
    loss, accuracy = logistic_loss_and_accuracy(query_logits(model, batch.tokens), batch.targets)
    return loss.item(), accuracy.item()


def make_optimizer(model: HookedTransformer, train: TrainConfig) -> torch.optim.Optimizer:
    """SGD or Adam with one weight decay for attention parameters and another for the rest.

    Parameters of the sub-circuits in ``train.frozen`` are left out, so they keep their initial
    weights.
    """
    groups: dict[bool, list[torch.nn.Parameter]] = {True: [], False: []}
    for name, parameter in model.named_parameters():
        frozen = any(f".{circuit}." in name for circuit in train.frozen)
        if parameter.requires_grad and not frozen:
            groups[".attn." in name].append(parameter)
    param_groups = [
        {"params": groups[True], "weight_decay": train.weight_decay_attn},
        {"params": groups[False], "weight_decay": train.weight_decay},
    ]
    if train.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=train.lr)
    return torch.optim.Adam(param_groups, lr=train.lr)


def _save_checkpoint(
    run_dir: Path, step: int, model: HookedTransformer, optimizer: torch.optim.Optimizer, data_rng: torch.Generator
) -> None:
    """The model at ``step``, then the optimizer and data-RNG state needed to resume from it."""
    meta = {"step": str(step)}
    storage.save_tensors(storage.checkpoint_path(run_dir, step), model.state_dict(), meta)
    state = optimizer.state_dict()
    tensors = {"data_rng": data_rng.get_state()}
    plain: dict[str, dict] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                plain.setdefault(str(index), {})[key] = value
    meta["optimizer"] = json.dumps({"param_groups": state["param_groups"], "plain_state": plain})
    storage.save_tensors(run_dir / storage.RESUME, tensors, meta)


def _restore(
    run_dir: Path, model: HookedTransformer, optimizer: torch.optim.Optimizer, data_rng: torch.Generator
) -> int:
    """Load the latest resume state and its checkpoint into the live objects; returns its step."""
    tensors, meta = storage.load_tensors(run_dir / storage.RESUME)
    step = int(meta["step"])
    weights, _ = storage.load_tensors(storage.checkpoint_path(run_dir, step), model.cfg.device)
    model.load_state_dict(weights)
    saved = json.loads(meta["optimizer"])
    state: dict[int, dict] = {}
    for index, values in saved["plain_state"].items():
        state.setdefault(int(index), {}).update(values)
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    data_rng.set_state(tensors["data_rng"])
    return step


def _prepare_run_dir(config: RunConfig, run_dir: Path, resume: bool) -> bool:
    """Create the run directory, or check it may be resumed; True when there is state to resume."""
    config_path = run_dir / storage.CONFIG
    if config_path.exists():
        if not resume:
            raise RunError(f"{run_dir} already holds a run; pass --resume to continue it, or another --out")
        saved = RunConfig.from_dict(storage.read_json(config_path))
        kept = {name: getattr(config.train, name) for name in RESUMABLE_CHANGES}
        if saved.override(**kept) != config:
            differing = [
                f"{section}.{key}"
                for section, values in config.to_dict().items()
                for key, value in values.items()
                if saved.to_dict()[section][key] != value and key not in RESUMABLE_CHANGES
            ]
            raise RunError(f"cannot resume {run_dir}: its saved config differs in {differing}")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir} exists and is not a run directory; choose another --out")
    (run_dir / storage.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    storage.write_json(config_path, config.to_dict())
    return (run_dir / storage.RESUME).exists()


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
) -> Run:
    """Train a run into ``run_dir`` (or continue it with ``resume``) and return it loaded."""
    run_dir = Path(run_dir)
    torch_device = resolve_device(device)
    has_state = _prepare_run_dir(config, run_dir, resume)
    status_path = run_dir / storage.STATUS
    if has_state and status_path.exists():
        status = storage.read_json(status_path)
        if status["last_step"] >= config.train.steps or status["stopped_early"]:
            return load_run(run_dir)
        status_path.unlink()

    train_cfg = config.train
    pool = training_pool(config.task, train_cfg.seed)
    eval_sets = {k: v.to(torch_device) for k, v in make_eval_sets(config.task, pool, train_cfg.seed).items()}
    model = build_model(config, torch_device)
    optimizer = make_optimizer(model, train_cfg)
    data_rng = stream_generator(train_cfg.seed, "train")
    start = _restore(run_dir, model, optimizer, data_rng) if has_state else 0
    metrics_path = run_dir / storage.METRICS
    kept_rows = [row for row in storage.read_json_lines(metrics_path) if has_state and row["step"] <= start]
    storage.atomic_write(metrics_path, "".join(json.dumps(row) + "\n" for row in kept_rows).encode())

    total = train_cfg.steps
    saves = set(checkpoint_steps(total, train_cfg.checkpoint_every))
    evals = set(range(0, total + 1, train_cfg.eval_every)) | saves
    sampling = TRAINING_MODES[config.task.burstiness]
    began = time.perf_counter()
    step, stopped_early = start, False
    with tqdm(total=total, initial=start, desc=run_dir.name, disable=not progress) as bar:
        while True:
            fresh = not (has_state and step == start)  # the resumed step is already recorded
            if fresh and step in evals:
                row = {"step": step}
                for name, batch in eval_sets.items():
                    row[f"{name}_loss"], row[f"{name}_acc"] = evaluate(model, batch)
                storage.append_json_line(metrics_path, row)
                bar.set_postfix(icl=f"{row['icl_acc']:.2f}", iwl=f"{row['iwl_acc']:.2f}")
                stop_at = train_cfg.stop_icl_acc
                stopped_early = stop_at is not None and row["icl_acc"] >= stop_at and step < total
            if fresh and (step in saves or stopped_early):
                _save_checkpoint(run_dir, step, model, optimizer, data_rng)
            if step >= total or stopped_early:
                break
            batch = sample_batch(config.task, pool, train_cfg.batch_size, data_rng, **sampling).to(torch_device)
            loss, _ = logistic_loss_and_accuracy(query_logits(model, batch.tokens), batch.targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update(1)
    seconds = time.perf_counter() - began
    storage.write_json(
        status_path,
        {
            "last_step": step,
            "stopped_early": stopped_early,
            "seconds": round(seconds, 3),
            "steps_per_second": round((step - start) / seconds, 2) if seconds > 0 else None,
            "device": str(torch_device),
        },
    )
    return load_run(run_dir)
