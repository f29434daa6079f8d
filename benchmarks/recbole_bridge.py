"""Train RecBole's SASRec on famekit's leave-one-out split and score it with famekit's protocol.

Runs ONLY inside the benchmark venv (``bash benchmarks/recbole_env.sh`` -> ``.venv-bench``), never
in famekit's: RecBole 1.2.1 needs numpy<2 and pandas<3. It imports nothing from famekit (the
two environments differ); benchmarks/reproduce.py exports the split and calls it:

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 .venv-bench/bin/python benchmarks/recbole_bridge.py train \
        --data-dir runs/bench/recbole-data/ml-100k-<fp> --dataset ml_100k --out RUN_DIR ...

Input (written by ``reproduce.export_for_recbole``): ``<data-dir>/<dataset>/<dataset>.inter``
(user_id, item_id, timestamp = position; the tokens are famekit's ids) and
``<data-dir>/eval_inputs.npz`` (famekit's valid/test inputs, targets and user rows).

What it does and why:

* ``import recbole`` turns on ``torch.autograd.set_detect_anomaly(True)`` (from its SINE model
  module), which makes every model ~1.7x slower: we switch it off before training.
* RecBole's sequential full ranking does not mask the user's history, famekit's does
  (docs/fame-spec.md §5).
  Model selection and the test numbers therefore use famekit's protocol, computed here: the
  trainer's ``_valid_epoch`` is replaced by a famekit-protocol validation NDCG@10 (early
  stopping on it, as famekit's trainer), and the best weights are scored on the test inputs with
  history masked and pessimistic ties. Ranks go to ``test_ranks.npy``; reproduce.py turns them
  into metrics with famekit's own code. The unmasked ranks are kept for orientation.
* The split is checked: RecBole's test rows must hold famekit's test targets and the last
  ``max_len`` items of famekit's test inputs (``split_check`` in result.json).
* ``saved=False``: no pickled checkpoint is written; the best weights stay in memory.

Output in ``--out``: ``result.json`` (status, best epoch, per-epoch history with seconds,
hyperparameters, split check, unmasked metrics), ``test_ranks.npy``, ``test_ranks_unmasked.npy``,
RecBole's own log under ``log/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def ndcg_hr(ranks: np.ndarray, k: int) -> tuple[float, float]:
    """(NDCG@k, HR@k) of 0-based ranks: the definitions of famekit.evaluation."""
    hit = ranks < k
    gains = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(gains.mean()), float(hit.mean())


class SplitInputs:
    """famekit's inputs of one split (flat + offsets), targets and user rows."""

    def __init__(self, arrays, split: str):
        self.flat = arrays[f"{split}_flat"]
        self.offsets = arrays[f"{split}_offsets"]
        self.targets = arrays[f"{split}_targets"]
        self.users = arrays[f"{split}_users"]

    def __len__(self) -> int:
        return len(self.targets)

    def sequence(self, row: int) -> np.ndarray:
        return self.flat[self.offsets[row]: self.offsets[row + 1]]


def famekit_ranks(model, inputs: SplitInputs, to_internal: torch.Tensor, max_len: int,
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(masked, unmasked) 0-based pessimistic ranks of each target, famekit's protocol.

    Scores every famekit item id (column v = item v; column 0 = padding, never a candidate);
    ``to_internal`` [V+1] maps a famekit id to RecBole's internal id (0 where RecBole has no
    such item: scored -inf, so it never outranks a target).
    """
    device = next(model.parameters()).device
    missing = (to_internal == 0).to(device)                                # [V+1]
    to_internal = to_internal.to(device)
    masked_out, unmasked_out = [], []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            rows = range(start, min(start + batch_size, len(inputs)))
            seqs = [inputs.sequence(r) for r in rows]
            windows = [s[-max_len:] for s in seqs]
            width = max(len(w) for w in windows)
            item_seq = torch.zeros((len(windows), width), dtype=torch.long)  # [B, n] right-padded
            for i, w in enumerate(windows):
                item_seq[i, : len(w)] = torch.from_numpy(w.astype(np.int64))
            item_seq = to_internal[item_seq.to(device)]                         # [B, n]
            item_seq_len = torch.tensor([len(w) for w in windows], device=device)
            states = model.forward(item_seq, item_seq_len)                      # [B, d]
            internal_scores = states @ model.item_embedding.weight.T            # [B, n_int]
            scores = internal_scores[:, to_internal].float()                    # [B, V+1]
            scores[:, missing] = -math.inf
            targets = torch.from_numpy(inputs.targets[start: start + len(windows)]).to(device)
            target_col = targets.view(-1, 1)                                    # [B, 1]
            target_scores = scores.gather(1, target_col)                        # [B, 1]
            counted = scores >= target_scores                                   # [B, V+1]
            counted[:, 0] = False
            counted.scatter_(1, target_col, False)
            unmasked_out.append(counted.sum(1).cpu().numpy())
            hist_width = max(len(s) for s in seqs)
            history = torch.zeros((len(seqs), hist_width), dtype=torch.long)   # [B, L] whole input
            for i, s in enumerate(seqs):
                history[i, : len(s)] = torch.from_numpy(s.astype(np.int64))
            counted.scatter_(1, history.to(device), False)
            counted.scatter_(1, target_col, False)  # the target is ranked even if repeated
            counted[:, 0] = False
            masked_out.append(counted.sum(1).cpu().numpy())
    return np.concatenate(masked_out), np.concatenate(unmasked_out)


def recbole_config(args) -> dict:
    return {
        "data_path": str(Path(args.data_dir).resolve()), "dataset": args.dataset,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "hidden_size": args.d_model, "inner_size": 4 * args.d_model,
        "n_layers": args.n_layers, "n_heads": args.n_heads,
        "hidden_dropout_prob": args.dropout, "attn_dropout_prob": 0.0,
        "hidden_act": "gelu", "layer_norm_eps": 1e-8, "initializer_range": 0.02,
        "loss_type": "CE", "train_neg_sample_args": None,
        "epochs": args.epochs, "train_batch_size": args.batch_size,
        "eval_batch_size": 256, "learning_rate": args.lr, "stopping_step": args.patience,
        "eval_step": 1, "seed": args.seed, "reproducibility": True,
        "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                      "group_by": "user"},
        "use_gpu": torch.cuda.is_available(), "show_progress": False, "worker": 0,
        "checkpoint_dir": str(Path(args.out).resolve() / "saved"),
        "save_dataset": False, "save_dataloaders": False, "log_wandb": False,
    }


def split_check(dataset, test_data, test: SplitInputs, max_len: int) -> dict:
    """Does RecBole's test split hold famekit's test targets and (windowed) inputs?"""
    feat = test_data.dataset.inter_feat
    users = dataset.id2token("user_id", feat["user_id"].numpy())
    targets = dataset.id2token("item_id", feat["item_id"].numpy())
    lists = feat["item_id_list"].numpy()
    lengths = feat["item_length"].numpy()
    by_user = {int(u) + 1: row for row, u in enumerate(test.users)}  # token = famekit row + 1
    target_mismatch = input_mismatch = unknown = 0
    for i, user in enumerate(users):
        row = by_user.get(int(user))
        if row is None:
            unknown += 1
            continue
        if int(targets[i]) != int(test.targets[row]):
            target_mismatch += 1
        items = dataset.id2token("item_id", lists[i, : lengths[i]]).astype(np.int64)
        if not np.array_equal(items, test.sequence(row)[-max_len:]):
            input_mismatch += 1
    return {"recbole_test_rows": len(users), "famekit_test_users": len(test),
            "target_mismatch": target_mismatch, "input_mismatch": input_mismatch,
            "users_unknown_to_famekit": unknown}


def write_json(path: Path, value) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def train(args) -> int:
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    args.data_dir = str(Path(args.data_dir).resolve())  # before the chdir below
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # RecBole writes log/ (and would write saved/) under the working directory
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    torch.autograd.set_detect_anomaly(False)  # recbole's import turned it on (~1.7x slower)
    arrays = dict(np.load(Path(args.data_dir) / "eval_inputs.npz", allow_pickle=False))
    valid, test = SplitInputs(arrays, "valid"), SplitInputs(arrays, "test")
    n_items = int(arrays["n_items"][0])

    sys.argv = sys.argv[:1]  # RecBole's Config also reads --key=value from the command line
    config = Config(model="SASRec", dataset=args.dataset, config_dict=recbole_config(args))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data.dataset).to(config["device"])
    torch.autograd.set_detect_anomaly(False)

    token_to_id = dataset.field2token_id["item_id"]
    to_internal = torch.zeros(n_items + 1, dtype=torch.long)                 # [V+1]
    for token, internal in token_to_id.items():
        if token != "[PAD]":
            to_internal[int(token)] = internal
    n_missing = int((to_internal[1:] == 0).sum())

    history: list[dict] = []
    best: dict = {"score": -1.0, "state": None, "epoch": None}
    clock = {"start": None, "train": 0.0}

    class TimeBudgetSpent(Exception):
        """Raised after an epoch's validation once ``--max-seconds`` of training have passed."""

    class FamekitProtocolTrainer(Trainer):
        """RecBole's trainer; validation = famekit's protocol (history masked)."""

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            if clock["start"] is None:
                clock["start"] = time.perf_counter()
            began = time.perf_counter()
            loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
            clock["train"] = time.perf_counter() - began
            clock["loss"] = float(loss)
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            began = time.perf_counter()
            ranks, _ = famekit_ranks(self.model, valid, to_internal, args.max_len)
            ndcg10, hr10 = ndcg_hr(ranks, 10)
            self.model.train()
            epoch = len(history) + 1
            if ndcg10 > best["score"]:
                best.update(score=ndcg10, epoch=epoch,
                            state=copy.deepcopy(self.model.state_dict()))
            history.append({"epoch": epoch, "train_loss": clock["loss"],
                            "valid_NDCG@10": ndcg10, "valid_HR@10": hr10,
                            "train_seconds": clock["train"],
                            "eval_seconds": time.perf_counter() - began,
                            "cumulative_seconds": time.perf_counter() - clock["start"]})
            print(f"epoch {epoch}: loss {clock['loss']:.4f} valid NDCG@10 {ndcg10:.4f} "
                  f"train {clock['train']:.1f}s", flush=True)
            # Per-epoch progress, so a run stopped from outside still leaves its history.
            write_json(out / "history.json", {"history": history, "best_epoch": best["epoch"]})
            if args.max_seconds and history[-1]["cumulative_seconds"] >= args.max_seconds:
                raise TimeBudgetSpent
            return ndcg10, {"ndcg@10": ndcg10, "hit@10": hr10}

    trainer = FamekitProtocolTrainer(config, model)
    torch.autograd.set_detect_anomaly(False)
    began = time.perf_counter()
    status = "finished"
    try:
        trainer.fit(train_data, valid_data, saved=False, show_progress=False,
                    verbose=args.verbose)
    except TimeBudgetSpent:
        status = f"stopped: --max-seconds {args.max_seconds} spent before early stopping"
        print(status, flush=True)
    seconds = time.perf_counter() - began
    model.load_state_dict(best["state"])
    eval_began = time.perf_counter()
    masked, unmasked = famekit_ranks(model, test, to_internal, args.max_len)
    test_eval_seconds = time.perf_counter() - eval_began
    np.save(out / "test_ranks.npy", masked.astype(np.int64), allow_pickle=False)
    np.save(out / "test_ranks_unmasked.npy", unmasked.astype(np.int64), allow_pickle=False)
    result = {
        "status": status, "best_epoch": best["epoch"], "epochs": len(history),
        "seconds": seconds, "test_eval_seconds": test_eval_seconds, "history": history,
        "recbole_version": recbole.__version__, "torch_version": torch.__version__,
        "anomaly_detection": torch.is_anomaly_enabled(),
        "hyperparameters": {k: v for k, v in recbole_config(args).items()
                            if k not in ("data_path", "checkpoint_dir")},
        "items_missing_in_recbole": n_missing,
        "split_check": split_check(dataset, test_data, test, args.max_len),
        "test_masked_NDCG@10_HR@10": ndcg_hr(masked, 10),
        "test_unmasked_NDCG@10_HR@10": ndcg_hr(unmasked, 10),
    }
    write_json(out / "result.json", result)  # result.json marks a finished run (resume skips it)
    print(json.dumps({k: result[k] for k in ("best_epoch", "epochs", "seconds", "split_check",
                                            "test_masked_NDCG@10_HR@10",
                                            "test_unmasked_NDCG@10_HR@10")}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train + score one RecBole SASRec run")
    t.add_argument("--data-dir", required=True)
    t.add_argument("--dataset", required=True, help="atomic file name (folder + .inter)")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=200)
    t.add_argument("--patience", type=int, default=10)
    t.add_argument("--max-len", type=int, default=50)
    t.add_argument("--d-model", type=int, default=64)
    t.add_argument("--n-layers", type=int, default=2)
    t.add_argument("--n-heads", type=int, default=4)
    t.add_argument("--dropout", type=float, default=0.2)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--max-seconds", type=float, default=None,
                   help="stop after the first epoch that ends past this many seconds of "
                        "training + validation; the best epoch so far is scored (status says so)")
    t.add_argument("--verbose", action="store_true", help="RecBole's per-epoch log lines")
    args = parser.parse_args(argv)
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
