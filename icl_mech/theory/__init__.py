"""The paper's theory in code: our reconstruction of its reduced kinetic model (docs/THEORY.md),
its predictions, and what it reads from runs.

- ``flow``: the reduced flow of the in-context parameters (beta, w), driven by the MLP's residual c1.
- ``transience``: the same flow past acquisition (the whole softmax, the residual saturated by the
  context's logit), with weight decay: T5's fade, and the drive fitted to a run's t_ICL.
- ``predictions``: T3's slope of ln t_ICL on beta0, T4's P_ICL(K) and K* from K = infinity seeds.
- ``residual``: c1 from a HookedTransformer's attention-free path, and the memorization integral I_K.
- ``beta0``: a seed's initial match sharpness, read from its attention at step 0.
- ``equalized``: T6, how equalized contexts raise the threshold Theta, and so K*.
- ``loss_tie``: T7, the ICL and IWL losses tied by the residual they share after acquisition.

Nothing here imports a command; the figures that put theory beside runs live in
``icl_mech.analysis.theory``. Names load on first use (PEP 562), so the light modules do not
import TransformerLens.
"""

from icl_mech.lazy_exports import lazy_exports

_HOMES = {
    "FlowParameters": "icl_mech.theory.flow",
    "Trajectory": "icl_mech.theory.flow",
    "integrate_flow": "icl_mech.theory.flow",
    "integrate_fading_flow": "icl_mech.theory.transience",
    "fit_drive": "icl_mech.theory.transience",
    "acquisition_probability": "icl_mech.theory.predictions",
    "predicted_threshold": "icl_mech.theory.predictions",
    "log_time_slope": "icl_mech.theory.predictions",
    "mlp_residual": "icl_mech.theory.residual",
    "memorization_integral": "icl_mech.theory.residual",
    "match_sharpness": "icl_mech.theory.beta0",
    "initial_match_sharpness": "icl_mech.theory.beta0",
    "threshold_ratio": "icl_mech.theory.equalized",
    "kstar_factor": "icl_mech.theory.equalized",
    "shared_residual": "icl_mech.theory.loss_tie",
    "tie_coordinates": "icl_mech.theory.loss_tie",
    "fit_tie": "icl_mech.theory.loss_tie",
    "tied_icl_loss": "icl_mech.theory.loss_tie",
}

__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
