"""famekit: train FAME (Facet-Aware Multi-Head Mixture-of-Experts sequential recommender) and
look inside it.

Layers, and the way imports run (nothing lower imports anything higher)::

    errors, validation, fileio -> datasets -> model (+ hooks)
      -> user_batches, evaluation, checkpoints, train_config, runs -> training, workspace
      -> analysis -> figures -> widgets, report, CLI

(docs/architecture.md: which module owns which concept.)
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

    See :meth:`famekit.runs.RunDir.load` and :func:`famekit.checkpoints.load_run`.
    """
    from famekit.runs import RunDir

    return RunDir(run_dir).load(dataset=dataset, device=device)


_LAZY = {"train": "famekit.training", "TrainConfig": "famekit.train_config",
         "RunDir": "famekit.runs"}


def __getattr__(name: str):
    """``famekit.train`` is :func:`famekit.training.train` itself (its signature and help
    included); ``famekit.TrainConfig`` and ``famekit.RunDir`` likewise. They are imported on
    first use, so that ``import famekit`` stays light (no torch)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'famekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
