"""famekit: train FAME (Facet-Aware Multi-Head Mixture-of-Experts sequential recommender) and
look inside it.

Layers, and the way imports run (nothing lower imports anything higher)::

    datasets -> model (+ hooks) -> train / evaluate / checkpoints -> analysis -> figures
             -> widgets, report, CLI
"""

__version__ = "0.1.0"

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
