"""The metrics columns the theory's residuals are logged in (``icl_mech.theory.residual``), apart
from the code that computes them so that a command's ``--help`` can name them without importing
torch."""

from __future__ import annotations

#: The metrics column the trainer logs c1 in, at every evaluation of a finite-K paired run.
C1 = "c1"
#: The metrics column of the residual read on the IWL set, logged beside c1.
IWL_RESIDUAL = "iwl_residual"
#: Both, in the order a metrics row holds them.
RESIDUALS = (C1, IWL_RESIDUAL)
