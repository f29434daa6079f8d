"""FAME+ training: the facet objective of a run, its pre-training, and its per-step term.

:func:`famekit.training.train` calls these for a run whose configuration names ``facets``
(docs/fame-spec.md §8): :func:`facet_objective` checks the assignment against the data and
builds the loss (:class:`famekit.facets.FacetObjective`); :func:`pretrain_facets` runs the
facet loss alone before epoch 1; :func:`facet_step_loss` is the term ``train_epoch`` adds to
every step. The item samples come from :func:`facet_rng`, keyed by (seed, epoch, step), so a
resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from famekit.datasets import SeqDataset
from famekit.facets import FacetObjective, resolve_facets
from famekit.model import ModelConfig
from famekit.train_config import TrainConfig

__all__ = ["facet_objective", "facet_rng", "facet_step_loss", "pretrain_facets"]


def facet_objective(config: TrainConfig, data: SeqDataset, model_config: ModelConfig
                    ) -> FacetObjective | None:
    """The facet objective of a FAME+ run (None without facets), checked against the data."""
    if not config.facets:
        return None
    labels = resolve_facets(data, config.facets, model_config.n_heads)
    heads = list(range(len(labels))) if config.facet_target == "heads" else None
    return FacetObjective(labels, heads, config.facet_items, config.facet_temperature)


def facet_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The item sample of one facet-loss step (epoch 0 = pre-training)."""
    return np.random.default_rng([seed, epoch, step, 0xFAC])


def facet_step_loss(model, objective: FacetObjective, config: TrainConfig, epoch: int
                    ) -> Callable[[int], torch.Tensor]:
    """``step -> weight * facet loss`` for the steps of one epoch (FAME+ joint schedule)."""
    def loss(step: int) -> torch.Tensor:
        rng = facet_rng(config.seed, epoch, step)
        return config.facet_weight * objective.loss(model, rng, step)
    return loss


def pretrain_facets(model, objective: FacetObjective, config: TrainConfig,
                    progress: bool = False) -> dict:
    """FAME+ pre-training: ``config.facet_pretrain_steps`` Adam steps of the facet loss alone,
    on the item parameters it reaches (E, and W_f for FAME), before sequential training.

    Deterministic for a seed (the samples come from :func:`facet_rng` with epoch 0). Returns
    the record kept with the run: steps, seconds, and the mean loss of the first and the last
    10 steps of each facet.
    """
    params = [p for p in (model.item_embed.weight, getattr(model, "item_projection", None))
              if p is not None]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    model.train()
    k = len(objective.facets)
    window = 10 * k
    losses = []
    started = time.perf_counter()
    for step in tqdm(range(config.facet_pretrain_steps), desc="pretrain facets", unit="step",
                     disable=not progress, leave=False):
        loss = objective.loss(model, facet_rng(config.seed, 0, step), step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():  # padding stays the zero vector (the lookup never sampled it)
        model.item_embed.weight[0].zero_()
    return {"steps": config.facet_pretrain_steps,
            "seconds": round(time.perf_counter() - started, 3),
            "first_loss": float(np.mean(losses[:window])),
            "last_loss": float(np.mean(losses[-window:]))}
