"""famekit: train FAME (Facet-Aware Multi-Head Mixture-of-Experts sequential recommender) and
look inside it.

Layers, and the way imports run (nothing lower imports anything higher)::

    datasets -> model (+ hooks) -> train / evaluate / checkpoints -> analysis -> figures
             -> widgets, report, CLI
"""

import os as _os

__version__ = "0.1.0"

# Intel MKL (torch's CPU BLAS on x86-64) may give different GEMM results from run to run with
# several threads unless its Conditional Numerical Reproducibility mode is on; "AUTO" keeps its
# fastest code path for this CPU. MKL reads the variable before its first call, so it is set
# here, before famekit imports torch; a value the user set wins (docs/decisions.md).
_os.environ.setdefault("MKL_CBWR", "AUTO")

from famekit.errors import FamekitError  # noqa: E402,F401


def load(run_dir, dataset=None, device=None):
    """Load a run directory (``model.safetensors`` + ``config.json``); never unpickles.

    See :func:`famekit.checkpoints.load_run`.
    """
    from famekit.checkpoints import load_run

    return load_run(run_dir, dataset=dataset, device=device)


def train(*args, **kwargs):
    """Train FAME or SASRec; see :func:`famekit.training.train`."""
    from famekit.training import train as _train

    return _train(*args, **kwargs)
