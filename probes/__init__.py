"""Probes of trained runs: pure functions of (model, data) built on TransformerLens hooks.

- ``circuits``: circuit name -> hook sites (``CIRCUITS``), head detection by score.
- ``circuit_names``: the circuit, ablation-method and head names a command line takes,
  importing no torch (so the commands' parsers and ``--help`` stay light).
- ``ablation``: zero / mean / resample ablation through hooks on the query path.
- ``query_only``: forwards that compute only what the query's logit needs.
- ``head_scores``: match (induction) and previous-token scores per head.
- ``attribution``: direct logit attribution that sums to the logit.
- ``independence`` and ``kinetics``: are the ICL and IWL sub-circuits independent?
- ``over_time``: any probe mapped over a run's checkpoints.
- ``llc`` (the only module importing devinterp) and ``llc_calibration``: the local learning
  coefficient, whole or restricted to attention / MLP weights, and models with known answers;
  ``llc_settings``: what an estimate is asked for (SGLD settings, restrictions, data), importing
  no torch.
- ``trajectory``: several runs' checkpoints in the joint PCA of their query logits.
- ``viz`` and ``plots``: circuitsvis pages (offline) and PNG plots.
- ``<command>_command``: the ``icl-mech ablate | probe | independence | viz | report | llc |
  trajectory`` subcommands, one module each, built from ``icl_mech.arguments``' shared flags.

``icl_mech`` never imports this package; the commands register through the
``icl_mech.commands`` entry-point group. See docs/PROBES.md.
"""
