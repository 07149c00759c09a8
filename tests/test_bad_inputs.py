"""Every bad input of every command: one line naming it, exit status 2, no traceback, nothing
written. A new command adds its rows to BAD_INPUTS (and, if it needs one, a fixture path to
``inputs``); the test does the rest."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from icl_mech import preset, storage, train
from icl_mech.cli import main

#: A 4-step run (checkpoints 0, 1, 2, 4) small enough to probe in a second.
TINY = {"K": 64, "steps": 4, "eval_every": 2, "checkpoint_every": 2, "eval_size": 64, "batch_size": 16, "d_mlp": 16}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Named paths the rows refer to as {name}: good and damaged runs, sweeps, a plain file."""
    root = tmp_path_factory.mktemp("inputs")
    run = train(preset("cpu").override(**TINY), root / "run", progress=False).path
    paths = {"root": root, "run": run, "new": root / "new", "missing": root / "missing"}

    def copy(name: str) -> Path:
        paths[name] = root / name
        return Path(shutil.copytree(run, root / name))

    (copy("corrupt_config") / storage.CONFIG).write_text('{"task": {"K": 64,')
    metrics = copy("corrupt_metrics") / storage.METRICS
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join([lines[0], '{"step": 1, "train_lo\n', *lines[2:]]))
    checkpoint = storage.checkpoint_path(copy("corrupt_checkpoint"), 4)
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    shutil.rmtree(copy("no_checkpoints") / storage.CHECKPOINTS)
    one_checkpoint = copy("one_checkpoint")
    for step in (0, 1, 2):
        storage.checkpoint_path(one_checkpoint, step).unlink()
    paths["not_a_run"] = root / "not_a_run"
    paths["not_a_run"].mkdir()
    (paths["not_a_run"] / "notes.txt").write_text("mine")
    paths["file"] = root / "file.txt"
    paths["file"].write_text("a file, not a directory")
    paths["empty_dir"] = root / "empty_dir"
    paths["empty_dir"].mkdir()
    paths["one_run_sweep"] = root / "one_run_sweep"
    shutil.copytree(run, paths["one_run_sweep"] / "K64")
    # Two steps of the interleaved preset: no induction or previous-token head has formed.
    unformed = preset("cpu-interleaved").override(steps=2, eval_every=2, checkpoint_every=2, eval_size=32)
    paths["unformed_interleaved"] = train(unformed, root / "unformed_interleaved", progress=False).path
    paths["corrupt_sweep"] = root / "corrupt_sweep"
    shutil.copytree(paths["corrupt_metrics"], paths["corrupt_sweep"] / "K64")
    theory_sweeps(run, root, paths)
    return paths


def theory_sweeps(run: Path, root: Path, paths: dict[str, Path]) -> None:
    """Sweeps that each lack one thing ``theory`` needs, made of copies of ``run`` whose config
    says what part they play (their checkpoints are never read: each is refused before)."""

    def variant(sweep: str, name: str, drop: str | None = None, **changes) -> None:
        target = Path(shutil.copytree(run, root / sweep / name))
        config = storage.read_json(target / storage.CONFIG)
        for section in config.values():
            section.update({key: value for key, value in changes.items() if key in section})
        storage.write_json(target / storage.CONFIG, config)
        if drop:  # a metrics column the run was trained without
            rows = storage.read_json_lines(target / storage.METRICS)
            (target / storage.METRICS).write_text("".join(json.dumps({k: v for k, v in row.items() if k != drop}) + "\n" for row in rows))

    infinite = [("Kinf-seed0", {"K": None, "seed": 0}), ("Kinf-seed1", {"K": None, "seed": 1}), ("Kinf-seed2", {"K": None, "seed": 2})]
    memorizing = ("mem-K64", {"frozen": ["attn"]})
    for sweep, runs in {
        "theory_no_memorization": infinite,
        "theory_no_c1": [*infinite, (*memorizing, "c1")],
        "theory_no_iwl_residual": [*infinite, (*memorizing, "iwl_residual")],
        "theory_one_seed": [infinite[0], memorizing],
        "theory_other_n": [*infinite, memorizing, ("K64-N10", {"N": 10})],
    }.items():
        paths[sweep] = root / sweep
        for name, changes, *drop in runs:
            variant(sweep, name, *drop, **changes)


def bad(*args: str, error: str, entry_point: bool = False, env: dict[str, str] | None = None):
    """A row: the command line (``{name}`` stands for ``inputs[name]``), a regular expression the
    one error line must match, whether to run it through the installed entry point, and
    environment variables to set for it."""
    env = env or {}
    words = [f"{name}={value}" for name, value in env.items()] + list(args)
    return pytest.param(list(args), error, entry_point, env, id=" ".join(words))


BAD_INPUTS = [
    # train
    bad("train", "--set", "colour=red", "--out", "{new}", error="unknown config field 'colour'"),
    bad("train", "--set", "lr=fast", "--out", "{new}", error="lr must be a number, got 'fast'"),
    bad("train", "--set", "steps=1e3", "--out", "{new}", error="steps must be an integer, got 1000.0"),
    bad("train", "--steps", "many", "--out", "{new}", error="argument --steps: invalid int value: 'many'"),
    bad("train", "--set", "lr", "--out", "{new}", error="--set expects FIELD=VALUE, got 'lr'"),
    bad("train", "--steps", "8", "--set", "steps=9", "--out", "{new}", error="--steps and --set steps=... both set steps"),
    bad("train", "--preset", "huge", "--out", "{new}", error="argument --preset: invalid choice: 'huge'"),
    bad("train", "--device", "tpu", "--out", "{new}", error="unknown device 'tpu'"),
    bad("train", "--out", "{file}", error="{file} cannot be a run directory: {file} is a file; choose another --out", entry_point=True),
    bad("train", "--out", "{file}/run", error="{file}/run cannot be a run directory: {file} is a file"),
    bad("train", "--resume", "--out", "{missing}", error=r"--resume: {missing} holds no run \(no config.json\)"),
    bad("train", "--preset", "cpu", "--resume", "--out", "{missing}", error="--resume: {missing} holds no run"),
    bad("train", "--out", "{run}", error="{run} already holds a run; pass --resume"),
    bad("train", "--resume", "--K", "128", "--out", "{run}", error=r"saved config differs in \['task.K'\]"),
    bad("train", "--resume", "--out", "{corrupt_config}", error="{corrupt_config}/config.json is not valid JSON"),
    bad("train", "--resume", "--steps", "8", "--out", "{corrupt_metrics}",
        error="{corrupt_metrics}/metrics.jsonl line 2 of 4 is not valid JSON"),
    bad("train", "--out", "{not_a_run}", error="{not_a_run} exists and is not a run directory"),
    bad("train", "--log", "mlflow", "--out", "{new}", error="argument --log: invalid choice: 'mlflow'"),
    bad("train", "--threads", "0", "--out", "{new}", error="--threads must be >= 1, got 0"),
    bad("train", "--preset", "cpu-interleaved", "--set", "distinct_labels=true", "--out", "{new}",
        error=r"distinct_labels needs at most L=2 classes per bursty context, got \(N-1\)/B=4"),
    bad("train", "--out", "{new}", env={"OMP_NUM_THREADS": "abc"}, error="OMP_NUM_THREADS='abc' is not a positive integer"),
    bad("train", "--set", "attention=reduced", "--set", "n_layers=2", "--out", "{new}",
        error="attention='reduced' is one block with one head and an MLP"),
    bad("train", "--set", "attention=reduced", "--set", "L=4", "--out", "{new}",
        error="attention='reduced' reads one label \\+1/-1 per paired token: it needs format='paired' and L=2"),
    # sweep
    bad("sweep", "--grid", "K=", "--out", "{new}", error="grid values '' hold an empty item", entry_point=True),
    bad("sweep", "--grid", "seed=3..1", "--out", "{new}", error="range '3..1' is empty"),
    bad("sweep", "--grid", "colour=red", "--out", "{new}", error="grid point colourred: unknown config field 'colour'"),
    bad("sweep", "--grid", "K=63", "--out", "{new}", error="grid point K63: K=63 must be a multiple of L=2"),
    bad("sweep", "--grid", "seed=0", "--set", "lr=fast", "--out", "{new}", error="lr must be a number, got 'fast'"),
    bad("sweep", "--grid", "seed=0", "--workers", "0", "--out", "{new}", error="--workers must be >= 1, got 0"),
    bad("sweep", "--grid", "seed=0", "--ensemble", "0", "--out", "{new}", error="--ensemble must be >= 1, got 0"),
    bad("sweep", "--grid", "seed=0", "--threads", "0", "--out", "{new}", error="--threads must be >= 1, got 0"),
    bad("sweep", "--grid", "seed=0", "--out", "{new}", env={"OMP_NUM_THREADS": "abc"},
        error="OMP_NUM_THREADS='abc' is not a positive integer"),
    bad("sweep", "--grid", "seed=0", "--out", "{file}", error="{file} cannot be a sweep directory: {file} is a file"),
    bad("sweep", "--grid", "seed=0", "--log", "mlflow", "--out", "{new}", error="argument --log: invalid choice: 'mlflow'"),
    bad("sweep", "--grid", "seed=0", "--executor", "slurm", "--slurm-max-requeues", "-1", "--out", "{new}",
        error="--slurm-max-requeues must be >= 0, got -1"),
    bad("sweep", "--grid", "seed=0", "--executor", "slurm", "--slurm-time", "1", "--out", "{new}",
        error=r"--slurm-signal-delay must be between 1 and 29 s for 1-minute tasks \(Slurm may signal up to 30 s early\), got 90"),
    # figures
    bad("figures", "--sweep", "{missing}", error="sweep directory {missing} does not exist", entry_point=True),
    bad("figures", "--sweep", "{empty_dir}", error="no finished run directories under"),
    bad("figures", "--sweep", "{corrupt_sweep}", error="{corrupt_sweep}/K64/metrics.jsonl line 2 of 4 is not valid JSON"),
    bad("figures", "--sweep", "{one_run_sweep}", "--out", "{new}", error="nothing written to {new}: .* fit no analysis"),
    bad("figures", "--sweep", "{one_run_sweep}", "--only", "bogus", error="argument --only: invalid choice: 'bogus'"),
    bad("figures", "--sweep", "{run}", error=r"argument --sweep: {run} is a run directory, not a sweep; pass the folder that "
        r"holds the runs \(--sweep {root}\), or look at this run with icl-mech report --run {run}"),
    # ablate
    bad("ablate", "--run", "{run}", "--circuit", "bogus", error="argument --circuit: invalid choice: 'bogus'"),
    bad("ablate", "--run", "{missing}", "--circuit", "mlp", error="run directory {missing} does not exist"),
    bad("ablate", "--run", "{file}", "--circuit", "mlp", error="{file} is a file, not a run directory"),
    bad("ablate", "--run", "{run}", "--circuit", "induction", "--step", "3", error="step 3 was never checkpointed in {run}"),
    bad("ablate", "--run", "{run}", "--circuit", "induction", "--heads", "9.9", error="head 9.9 does not exist"),
    bad("ablate", "--run", "{run}", "--circuit", "induction", "--heads", "x", error="argument --heads: invalid parse_heads value: 'x'"),
    bad("ablate", "--run", "{corrupt_config}", "--circuit", "mlp", error="{corrupt_config}/config.json is not valid JSON"),
    bad("ablate", "--run", "{unformed_interleaved}", "--circuit", "induction",
        error=r"no head in layer\(s\) 1 reaches induction score 0.5 \(the best: head 1.0, 0\.\d\d\): the circuit has "
        "not formed in this checkpoint; name its heads with --heads LAYER.HEAD, or take the best with --best-below-threshold"),
    bad("ablate", "--run", "{unformed_interleaved}", "--circuit", "previous-token",
        error=r"no head in layer\(s\) 0 reaches label_previous_token score 0.5 \(the best: head 0.0, 0\.\d\d\)"),
    # probe
    bad("probe", "--run", "{run}", "--step", "3", error="step 3 was never checkpointed in {run}"),
    bad("probe", "--run", "{run}", "--device", "tpu", error="unknown device 'tpu'"),
    bad("probe", "--run", "{corrupt_checkpoint}", "--quiet", error="step_00000004.safetensors is corrupt or truncated"),
    bad("probe", "--run", "{run}", "--all-steps", "--out", "{file}/probe", error="argument --out: {file} is a file, not a directory"),
    bad("ablate", "--run", "{run}", "--circuit", "mlp", "--all-steps", "--out", "{file}", error="argument --out: {file} is a file"),
    # independence
    bad("independence", "--run", "{run}", "--method", "bogus", error="argument --method: invalid choice: 'bogus'"),
    bad("independence", "--run", "{no_checkpoints}", error="{no_checkpoints} has no checkpoints yet"),
    bad("independence", "--run", "{unformed_interleaved}", error=r"no head in layer\(s\) 1 reaches induction score 0.5"),
    # viz
    bad("viz", "--run", "{run}", "--set", "bogus", "--out", "{new}/v.html", error="argument --set: invalid choice: 'bogus'"),
    bad("viz", "--run", "{run}", "--index", "99999", "--out", "{new}/v.html", error="sequence index 99999 is out of range"),
    bad("viz", "--run", "{run}", "--out", "{file}/v.html", error="argument --out: {file} is a file, not a directory"),
    bad("viz", "--run", "{run}", "--out", "{root}", error="argument --out: {root} is a directory; give a file name"),
    bad("viz", "--run", "{run}", error="the following arguments are required: --out"),
    # report
    bad("report", "--run", "{missing}", "--out", "{new}.html", error="run directory {missing} does not exist"),
    bad("report", "--run", "{empty_dir}", "--out", "{new}.html", error="{empty_dir} is not a run directory: it has no config.json"),
    bad("report", "--run", "{no_checkpoints}", "--out", "{new}.html", error="{no_checkpoints} has no checkpoints"),
    bad("report", "--run", "{run}", "--out", "{root}", error="--out {root} cannot be written: a directory is in its place"),
    bad("report", "--run", "{run}", "--out", "{file}/r.html", error="--out {file}/r.html cannot be written: Not a directory"),
    bad("report", "--run", "{run}", "--out", "{new}.html", "--device", "tpu", error="unknown device 'tpu'"),
    bad("report", "--run", "{run}", "--out", "{new}.html", "--threads", "0", error="--threads must be >= 1, got 0"),
    # llc
    bad("llc", "--run", "{run}", "--n-beta", "inf", error="SGLD setting n_beta must be a finite number, got inf"),
    bad("llc", "--run", "{run}", "--lr", "nan", error="SGLD setting lr must be a finite number, got nan"),
    bad("llc", "--run", "{run}", "--threads", "0", error="--threads must be >= 1, got 0"),
    # trajectory
    bad("trajectory", "--run", "{run}", "--probe-size", "0", error="probe size must be at least 1 sequence of each kind, got 0"),
    bad("trajectory", "--run", "{run}", "--probe-size", "-3", error="probe size must be at least 1 sequence of each kind, got -3"),
    bad("trajectory", "--run", "{one_checkpoint}",
        error="trajectory needs at least 3 checkpoints in all to find a direction among them, got 1"),
    # predict
    bad("predict", "--sweep", "{one_run_sweep}", "--N", "10,x", error=r"--N expects context lengths .* got '10,x'"),
    bad("predict", "--sweep", "{missing}", "--N", "10", error="sweep directory {missing} does not exist"),
    bad("predict", "--sweep", "{one_run_sweep}", "--measured", "{run}", "--N", "10",
        error="argument --measured: {run} is a run directory, not a sweep"),
    bad("predict", "--sweep", "{empty_dir}", "--N", "10", error="no finished run directories under"),
    bad("predict", "--sweep", "{one_run_sweep}", "--N", "10", error="predict needs frozen-attention runs"),
    bad("predict", "--sweep", "{one_run_sweep}", "--N", "10", "--out", "{file}", error="--out {file} is a file; expected a directory"),
    # theory
    bad("theory", "--sweep", "{one_run_sweep}", "--out", "{new}", error="theory needs K = infinity whole-model runs"),
    bad("theory", "--sweep", "{theory_no_memorization}", "--out", "{new}", error=r"theory needs memorization runs \(frozen=attn"),
    bad("theory", "--sweep", "{theory_no_c1}", "--out", "{new}",
        error="{theory_no_c1}/mem-K64 has no c1 in its metrics .* train it again"),
    bad("theory", "--sweep", "{theory_no_iwl_residual}", "--out", "{new}", "--residual", "iwl_residual",
        error="{theory_no_iwl_residual}/mem-K64 has no iwl_residual in its metrics .* train it again"),
    bad("theory", "--sweep", "{theory_no_c1}", "--out", "{new}", "--residual", "c2", error="argument --residual: invalid choice: 'c2'"),
    bad("theory", "--sweep", "{theory_one_seed}", "--out", "{new}", error="K = infinity runs of 3 or more seeds at each N; N=20 has 1"),
    bad("theory", "--sweep", "{theory_other_n}", "--out", "{new}", error=r"the K sweeps at N=\[10\] have no K = infinity runs at the same N"),
    bad("theory", "--sweep", "{theory_other_n}", "--out", "{file}", error="argument --out: {file} is a file, not a directory"),
    bad("theory", "--sweep", "{run}", "--out", "{new}", error="argument --sweep: {run} is a run directory, not a sweep"),
]


def tree(root: Path) -> dict[Path, tuple[bytes, int] | None]:
    """Every file (bytes, mtime) and directory (None) under ``root``."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None for p in root.rglob("*")}


@pytest.mark.parametrize(("args", "error", "through_entry_point", "env"), BAD_INPUTS)
def test_bad_input_is_one_line_naming_it_exit_2_and_writes_nothing(args, error, through_entry_point, env, inputs, capsys, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    names = {name: str(path) for name, path in inputs.items()}
    argv = [arg.format(**names) for arg in args]
    before = tree(inputs["root"])
    if through_entry_point:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "icl-mech"), *argv], capture_output=True, text=True, timeout=300
        )
        code, stderr = result.returncode, result.stderr
    else:
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse exits
            code = exit_.code
        stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr, stderr
    (line,) = stderr.splitlines()
    assert line.startswith(f"icl-mech {argv[0]}: error: ")
    assert re.search(error.format(**{name: re.escape(path) for name, path in names.items()}), line), line
    assert tree(inputs["root"]) == before
