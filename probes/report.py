"""One self-contained HTML page per run, the page a researcher sends a colleague.

Everything on it comes from the library: the metrics log (``Run.metrics``), ``probe_run`` (match
scores and direct logit attribution over time), ``independence_run`` and ``verdict`` (the
cross-ablation matrix over time), ``llc_run`` (the local learning coefficient over time, with its
chains' traces), ``head_patterns`` at every checkpoint (circuitsvis's attention
heads, with a slider over checkpoints) and the run's config. Plots are PNGs inlined as data URIs
and the page carries circuitsvis's bundled script once, so it opens offline. ``#step=N`` in the
page's address selects checkpoint N.
"""

from __future__ import annotations

import base64
import errno
import html
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from circuitsvis.attention import attention_heads

from icl_mech import storage
from icl_mech.baselines import BASELINES, IWL_SETS
from icl_mech.errors import RunError, WriteError
from icl_mech.run import Run
from probes.independence import cross_ablation_matrix, independence_run, verdict
from probes.llc import RESTRICTIONS, SGLDSettings, llc_record, llc_run
from probes.over_time import probe_run
from probes.plots import METRICS_PANELS, Panels, independence_panels, plot_columns, plot_llc, plot_llc_traces, probe_panels
from probes.viz import head_patterns

#: The LLC section's SGLD settings: what its plot needs (each checkpoint's estimate with a spread
#: over chains, and traces that show the burn-in), a tenth of the sampling of ``icl-mech llc``'s
#: defaults (2 chains x 64 sequences x (100 + 50) steps against 4 x 128 x (200 + 200)), and small
#: enough for every checkpoint to be stacked into one SGLD step (``probes.llc.stack_size``). On the
#: shipped ICL run its estimates lie within 7% of the defaults' from step 256 on (the MLP's, which
#: are small, 21-33% below): the curve's shape, not values to set beside the defaults' (docs/LLC.md).
LLC_SETTINGS = SGLDSettings(chains=2, burn_in=100, draws=50, batch_size=64)

#: The evaluation sequence whose attention the page shows.
SEQUENCE = ("icl", 0)

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 1em auto; padding: 0 1em; }
img { max-width: 100%; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: right; }
pre { background: #f4f4f4; padding: 0.5em; }
"""

# Re-renders circuitsvis's attention heads when the slider (or #step=N in the address) picks
# another checkpoint. CircuitsVis is the bundled script's global, exposed by the first module.
SELECTOR = """
const slider = document.getElementById("step-slider");
const label = document.getElementById("step-label");
const view = document.getElementById("attention-view");
let shown = slider.valueAsNumber;
function show(index) {
  if (index === shown) return;
  shown = index;
  slider.value = index;
  label.textContent = STEPS[index];
  const target = document.createElement("div");
  target.id = `attention-step-${STEPS[index]}`;
  view.replaceChildren(target);
  window.CircuitsVis.render(target.id, window.CircuitsVis.AttentionHeads, PROPS[index]);
}
function fromAddress() {
  const match = location.hash.match(/^#step=(\\d+)$/);
  const index = match ? STEPS.indexOf(Number(match[1])) : -1;
  if (index >= 0) show(index);
}
slider.addEventListener("input", () => {
  show(slider.valueAsNumber);
  history.replaceState(null, "", `#step=${STEPS[shown]}`);
});
window.addEventListener("hashchange", fromAddress);
fromAddress();
"""


def _json(value: object) -> str:
    """JSON that is safe inside a <script> element."""
    return json.dumps(value).replace("</", "<\\/")


def _png(plot: Callable[[io.BytesIO], None], title: str) -> str:
    """What ``plot`` draws into a PNG buffer, as an inline image."""
    buffer = io.BytesIO()
    plot(buffer)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'


def _figure(table: pd.DataFrame, panels: Panels, title: str) -> str:
    return _png(lambda buffer: plot_columns(table, panels, title, buffer), title)


def _attention_section(patterns: dict[int, dict]) -> str:
    """circuitsvis's attention heads at the last checkpoint, a slider over every checkpoint, and
    the per-checkpoint patterns as JSON (circuitsvis's prop names) for the selector script."""
    steps = list(patterns)
    props = [
        {"attention": p["attention"], "tokens": p["tokens"], "attentionHeadNames": p["attention_head_names"]}
        for p in patterns.values()
    ]
    view = attention_heads(**patterns[steps[-1]]).local_src
    body, end = view.rsplit("</script>", 1)  # the bundled script's module; expose its global
    view = f"{body}\nwindow.CircuitsVis = CircuitsVis;\n</script>{end}"
    name, index = SEQUENCE
    return f"""<section id="attention"><h2>Attention on {name} sequence {index} over training</h2>
<p>Every head's pattern; tokens are <code>#item:label</code>, the last one is the query.
<label>Checkpoint: <input type="range" id="step-slider" min="0" max="{len(steps) - 1}"
value="{len(steps) - 1}"> step <output id="step-label">{steps[-1]}</output></label></p>
<div id="attention-view">{view}</div>
<script type="module">
const STEPS = {_json(steps)};
const PROPS = {_json(props)};
{SELECTOR}</script></section>"""


def _independence_section(run: Run, device: str | torch.device, progress: bool) -> str:
    if run.config.model.attn_only:
        return "<p>Attention-only model: there is no MLP sub-circuit to cross-ablate.</p>"
    table = independence_run(run, device=device, progress=progress)
    matrix = cross_ablation_matrix(table.iloc[-1]).to_html(float_format="{:.3f}".format)
    return f"""{_figure(table, independence_panels(table), f"{run.path.name}: cross-ablation over training")}
<h3>At step {run.steps[-1]}</h3>{matrix}
<p><b>Verdict:</b> {html.escape(verdict(table.iloc[-1]))}</p>"""


def _llc_section(run: Run, settings: SGLDSettings | None, device: str | torch.device, progress: bool) -> str:
    if settings is None:
        return "<p>Not computed for this report (<code>--no-llc</code>); <code>icl-mech llc --all-steps</code> computes it.</p>"
    restrictions = [r for r in RESTRICTIONS if not (r == "mlp" and run.config.model.attn_only)]
    table, estimates = llc_run(run, restrictions=restrictions, settings=settings, device=device, progress=progress)
    record = llc_record(run, table, estimates)
    title = f"{run.path.name}: local learning coefficient"
    flagged = table[table.warnings != ""]
    notes = "".join(
        f"<li>step {row.step}, {row.restriction}: {html.escape(row.warnings)}</li>" for row in flagged.itertuples()
    )
    return f"""<p>SGLD settings (absolute values depend on them; compare estimates made with the same
ones, docs/LLC.md; <code>icl-mech llc --all-steps</code> samples longer chains): <code>{html.escape(json.dumps(settings.to_dict()))}</code></p>
{_png(lambda buffer: plot_llc(table, run.metrics, title, buffer), title)}
{_png(lambda buffer: plot_llc_traces(record["traces"], settings.burn_in, run.path.name, buffer), "chain traces")}
{f"<p>Warnings:</p><ul>{notes}</ul>" if notes else "<p>No chain diverged, every trace flattened, no estimate is negative.</p>"}"""


def _baselines_text(probes: pd.DataFrame) -> str:
    """What the IWL accuracies have to beat, from ``probe_run``'s baseline columns."""
    last = probes.iloc[-1]
    parts = [f"chance (1/L) {last['chance']:.3f}"]
    for name in IWL_SETS:
        if f"{name}_label_prior" in probes:
            levels = ", ".join(
                f"{baseline.replace('_', ' ')} {last[f'{name}_{baseline}']:.3f}" for baseline in BASELINES[1:]
            )
            parts.append(f"<code>{name}</code>: {levels}")
    return ("IWL accuracy means memorization only above what needs no memory of a class: "
            + "; ".join(parts) + " (<code>icl_mech.baselines</code>).")


def report_html(
    run: Run, device: str | torch.device = "cpu", progress: bool = True, llc: SGLDSettings | None = LLC_SETTINGS
) -> str:
    """The whole page for ``run`` (every checkpoint); ``llc`` is the LLC section's SGLD settings
    (None leaves the section out: it is the slowest)."""
    if not run.steps:
        raise RunError(f"{run.path} has no checkpoints yet")
    name, index = SEQUENCE
    batch = run.eval_sets(device)[name]
    patterns = {step: head_patterns(model, batch, index) for step, model in run.models(device=device)}
    probes = probe_run(run, device=device, progress=progress)
    status = run.status or {"status": "unfinished"}
    title = f"icl-mech report: {run.path.name}"
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<p><code>{html.escape(str(run.path))}</code>: {len(run.steps)} checkpoints, steps {run.steps[0]} to
{run.steps[-1]}. Status: <code>{html.escape(json.dumps(status), quote=False)}</code></p>
<h2>ICL and IWL accuracy and loss over training</h2>
{_figure(run.metrics, METRICS_PANELS, f"{run.path.name}: metrics log")}
<p>{_baselines_text(probes)}</p>
{_attention_section(patterns)}
<h2>Match (induction) score and direct logit attribution over training</h2>
<p>Match score: attention from the query to the context tokens holding its item (chance
{probes["match_chance"].iloc[-1]:.3f}). Attribution: each component's mean direct contribution
to the query logit toward the correct label.</p>
{_figure(probes, probe_panels(probes), f"{run.path.name}: probes over training")}
<h2>Cross-ablation of the induction head and the MLP over training</h2>
{_independence_section(run, device, progress)}
<h2>Local learning coefficient over training (training data)</h2>
{_llc_section(run, llc, device, progress)}
<h2>Config</h2>
<pre>{html.escape(json.dumps(run.config.to_dict(), indent=2), quote=False)}</pre>
</body></html>
"""


def write_report(
    run: Run, out: str | Path, device: str | torch.device = "cpu", progress: bool = True,
    llc: SGLDSettings | None = LLC_SETTINGS,
) -> Path:
    """Write ``report_html(run)`` to ``out`` (atomically). Whether ``out``'s directory takes a
    new file is tried before the probes run, so a bad ``out`` fails at once."""
    out = Path(out)
    try:
        if out.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a directory is in its place")
        with tempfile.TemporaryFile(dir=out.parent):
            pass
        storage.atomic_write(out, report_html(run, device, progress, llc).encode())
    except OSError as error:
        raise WriteError(f"--out {out} cannot be written: {error.strerror}") from None
    return out
