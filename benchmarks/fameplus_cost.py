"""What FAME+'s facet loss costs: pre-training seconds and an epoch with and without the loss.

    .venv/bin/python benchmarks/fameplus_cost.py            # the synthetic world, its recipe
    .venv/bin/python benchmarks/fameplus_cost.py --repeats 5

Times, on an otherwise idle machine (the threads torch uses by default, or OMP_NUM_THREADS):

* FAME+ pre-training (``famekit.fameplus.pretrain_facets``: ``facet_pretrain_steps`` steps of
  the facet loss alone, the defaults of ``TrainConfig``);
* one training epoch of FAME (``train_epoch``, the synthetic recipe), and the same epoch with
  the facet loss added to every step (FAME+'s "joint" part);

each ``--repeats`` times from the same initial weights, and prints the minimum and median.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from famekit.batching import NextItemBatches
from famekit.datasets import load
from famekit.facets import FacetObjective, resolve_facets
from famekit.model import build_model
from famekit.fameplus import facet_step_loss, pretrain_facets
from famekit.training import epoch_rng, seed_torch_for_epoch, train_epoch
from famekit.workspace import FACETED_DATASETS, recipe

FACETS = FACETED_DATASETS["synthetic"]


def _fresh(config, data):
    torch.manual_seed(0)
    model = build_model(config.model_config(data.n_items))
    return model, torch.optim.Adam(model.parameters(), lr=config.lr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    config = dataclasses.replace(recipe("synthetic").config, facets=FACETS)
    data = load("synthetic")
    labels = resolve_facets(data, FACETS, config.model_config(data.n_items).n_heads)
    objective = FacetObjective(labels, list(range(len(FACETS))), config.facet_items,
                               config.facet_temperature)
    batches = NextItemBatches(data.split().train_sequences(), config.max_len, config.batch_size)
    times: dict[str, list[float]] = {"pretrain": [], "epoch FAME": [], "epoch FAME+ joint": []}
    for _ in range(args.repeats):
        model, _ = _fresh(config, data)
        started = time.perf_counter()
        pretrain_facets(model, objective, config)
        times["pretrain"].append(time.perf_counter() - started)
        for label, extra in (("epoch FAME", False), ("epoch FAME+ joint", True)):
            model, optimizer = _fresh(config, data)
            seed_torch_for_epoch(config.seed, 1)
            epoch_batches = batches.epoch(epoch_rng(config.seed, 1))

            started = time.perf_counter()
            train_epoch(model, optimizer, batches, epoch_batches,
                        loss_weighting=config.loss_weighting,
                        extra_loss=(facet_step_loss(model, objective, config, 1) if extra
                                    else None))
            times[label].append(time.perf_counter() - started)
    print(f"synthetic world, {data.n_items} items, {len(batches)} training users, "
          f"{torch.get_num_threads()} threads, {args.repeats} repeats; facets {', '.join(FACETS)}, "
          f"{config.facet_pretrain_steps} pre-training steps of {config.facet_items} items")
    for label, values in times.items():
        print(f"  {label:18s} min {min(values):6.2f} s   median {statistics.median(values):6.2f} s")
    ratio = min(times["epoch FAME+ joint"]) / min(times["epoch FAME"])
    print(f"  the facet loss makes an epoch {ratio:.2f}x as long; pre-training = "
          f"{min(times['pretrain']) / min(times['epoch FAME']):.1f} FAME epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
