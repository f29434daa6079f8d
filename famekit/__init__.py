"""famekit: train FAME (Facet-Aware Multi-Head Mixture-of-Experts sequential recommender) and
look inside it.

Layers, and the way imports run (nothing lower imports anything higher)::

    datasets -> model (+ hooks) -> train / evaluate / checkpoints -> analysis -> figures
             -> widgets, report, CLI
"""

__version__ = "0.1.0"

from famekit.errors import FamekitError  # noqa: E402,F401
