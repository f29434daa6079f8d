"""Contract tests of famekit.model: config, interface, loss, padding, training, devices."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from famekit.batching import pad_left
from famekit.errors import FamekitError, ParameterError
from famekit.model import FAME, ModelConfig, SASRec, build_model

KINDS = ["fame", "sasrec"]
V = 23  # items of the tiny world


def tiny_config(kind: str = "fame", **overrides) -> ModelConfig:
    # N != H and d' != H so that a swapped axis cannot go unnoticed.
    fields = {"n_items": V, "kind": kind, "max_len": 8, "d_model": 16, "n_layers": 2,
              "n_heads": 4, "n_experts": 3, "dropout": 0.0}
    fields.update(overrides)
    return ModelConfig(**fields)


def tiny_model(kind: str = "fame", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(tiny_config(kind, **overrides))


def random_batch(seed: int = 0, batch: int = 5, max_len: int = 8):
    """Left-padded inputs and next-item targets (0 where the input is padding)."""
    gen = torch.Generator().manual_seed(seed)
    seqs = []
    for row in range(batch):
        length = 2 + row % (max_len - 1)
        seqs.append(torch.randint(1, V + 1, (length + 1,), generator=gen).numpy())
    inputs = torch.as_tensor(pad_left([s[:-1] for s in seqs], max_len))
    targets = torch.as_tensor(pad_left([s[1:] for s in seqs], max_len))
    return inputs, targets


# ---------------------------------------------------------------------------------- config
def test_config_round_trips_through_json():
    cfg = tiny_config("fame", norm_first=True, sub_embedding="slice", dropout=0.3)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert set(cfg.to_dict()) == {f.name for f in dataclasses.fields(ModelConfig)}
    assert cfg.d_head == 4


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_items", 0),
        ("n_items", 2.5),
        ("max_len", True),
        ("d_model", 18),  # not divisible by n_heads=4
        ("n_layers", 0),
        ("n_heads", -1),
        ("n_experts", 0),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("dropout", "0.2"),
        ("attn_dropout", 1.5),
        ("kind", "bert4rec"),
        ("sub_embedding", "random"),
        ("norm_first", 1),
        ("layer_norm_eps", 0.0),
        ("init_std", -1.0),
        ("ffn_mult", 0),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ParameterError, match=field) as info:
        tiny_config(**{field: value})
    assert "Fix:" in str(info.value)
    assert isinstance(info.value, FamekitError)


def test_config_from_dict_rejects_unknown_and_missing_keys():
    data = tiny_config().to_dict()
    with pytest.raises(ParameterError, match="unknown keys.*n_facets"):
        ModelConfig.from_dict({**data, "n_facets": 4})
    incomplete = dict(data)
    del incomplete["dropout"]
    with pytest.raises(ParameterError, match="lacks keys.*dropout"):
        ModelConfig.from_dict(incomplete)
    with pytest.raises(ParameterError):
        ModelConfig.from_dict([("n_items", 3)])


def test_config_is_frozen_and_replace_validates():
    cfg = tiny_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dropout = 0.5
    assert dataclasses.replace(cfg, dropout=0.5).dropout == 0.5
    with pytest.raises(ParameterError, match="dropout"):
        dataclasses.replace(cfg, dropout=2.0)


def test_build_model_picks_the_class_by_kind():
    fame, sasrec = tiny_model("fame"), tiny_model("sasrec")
    assert isinstance(fame, FAME) and isinstance(sasrec, SASRec)
    assert fame.config == tiny_config("fame")
    # FAME has L-1 ordinary blocks plus its last layer; SASRec has L blocks.
    assert len(fame.blocks) == 1 and len(sasrec.blocks) == 2
    with pytest.raises(ParameterError, match="ModelConfig"):
        build_model(tiny_config().to_dict())


# ---------------------------------------------------------------------------------- interface
@pytest.mark.parametrize("kind", KINDS)
def test_loss_is_cross_entropy_over_items_at_target_positions(kind):
    model = tiny_model(kind).eval()
    inputs, targets = random_batch()
    loss = model(inputs, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # The same loss from the (opt-in) scores at every position, scored the slow way.
    _, cache = model.run_with_cache(inputs, names_filter=["hook_logits"])
    logits = cache["hook_logits"]  # [B, n, V+1]
    keep = targets != 0
    expected = F.cross_entropy(logits[keep][:, 1:], targets[keep] - 1)
    torch.testing.assert_close(loss, expected)
    # Positions whose target is 0 do not count.
    fewer = targets.clone()
    fewer[:, :-1] = 0
    expected_last = F.cross_entropy(logits[:, -1, 1:], targets[:, -1] - 1)
    torch.testing.assert_close(model(inputs, fewer), expected_last)


@pytest.mark.parametrize("kind", KINDS)
def test_score_last_shape_and_consistency_with_all_positions(kind):
    model = tiny_model(kind).eval()
    inputs, _ = random_batch()
    with torch.no_grad():
        scores = model.score_last(inputs)
        _, cache = model.run_with_cache(inputs, names_filter="hook_logits")
    assert scores.shape == (inputs.shape[0], V + 1) and scores.is_floating_point()
    torch.testing.assert_close(scores, cache["hook_logits"][:, -1])


@pytest.mark.parametrize("kind", KINDS)
def test_extra_left_padding_changes_nothing(kind):
    model = tiny_model(kind).eval()
    inputs, targets = random_batch(seed=3)
    wide_inputs = torch.nn.functional.pad(inputs, (3, 0))  # 3 more padding columns on the left
    wide_targets = torch.nn.functional.pad(targets, (3, 0))
    with torch.no_grad():
        torch.testing.assert_close(model.score_last(wide_inputs), model.score_last(inputs),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(wide_inputs, wide_targets), model(inputs, targets),
                                   rtol=1e-5, atol=1e-6)
        # A row scores the same alone, trimmed to its own length, as inside the batch.
        row = inputs[1:2]
        alone = row[:, (row[0] != 0).nonzero()[0, 0]:]
        torch.testing.assert_close(model.score_last(alone), model.score_last(inputs)[1:2],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_row_stays_zero_after_an_optimizer_step(kind):
    model = tiny_model(kind, dropout=0.2).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs, targets = random_batch()
    model(inputs, targets).backward()
    assert torch.count_nonzero(model.item_embed.weight.grad[0]) == 0
    assert torch.count_nonzero(model.item_embed.weight.grad[1:]) > 0
    optimizer.step()
    assert torch.count_nonzero(model.item_embed.weight[0]) == 0
    assert torch.count_nonzero(model.pos_embed.weight[0]) == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("explicit", [False, True])
def test_dropout_rates_act_only_in_training(kind, explicit):
    inputs, targets = random_batch()
    names = ["blocks.0.attn.hook_pattern", "fame.hook_expert_pattern"] if explicit else []
    for fields, differs in [({}, False), ({"attn_dropout": 0.5}, True), ({"dropout": 0.5}, True)]:
        model = tiny_model(kind, **fields).train()
        names_here = [n for n in names if n in model.hook_dict]
        with model.hooks([(name, lambda t, hook: None) for name in names_here]):
            first, second = model(inputs, targets), model(inputs, targets)
        assert (first.item() != second.item()) == differs, fields
        model.eval()
        assert model(inputs, targets).item() == model(inputs, targets).item()


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_without_targets_gives_zero_loss_and_grads_for_all(kind):
    model = tiny_model(kind)
    inputs, targets = random_batch()
    loss = model(inputs, torch.zeros_like(targets))
    assert loss.item() == 0.0
    loss.backward()  # DDP needs every parameter in the graph on every rank
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_training_memorises_a_tiny_world(kind):
    """Two cyclic sequences: one step lowers the loss; a few dozen learn the next item."""
    model = tiny_model(kind, seed=1, dropout=0.1).train()
    cycle_a = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    cycle_b = [10, 12, 14, 16, 18, 20, 22, 11, 13]
    inputs = torch.tensor([cycle_a[:-1], cycle_b[:-1]])
    targets = torch.tensor([cycle_a[1:], cycle_b[1:]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    losses = []
    for _ in range(60):
        loss = model(inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    with torch.no_grad():
        predicted = model.score_last(inputs)[:, 1:].argmax(dim=1) + 1
    assert predicted.tolist() == [cycle_a[-1], cycle_b[-1]]


@pytest.mark.parametrize(
    "inputs, targets, match",
    [
        (torch.ones(2, 3), None, "int64"),
        (torch.ones(3, dtype=torch.long), None, "shape"),
        (torch.ones(2, 0, dtype=torch.long), None, "shape"),
        (torch.tensor([[1, V + 1]]), None, r"1\.\.23"),
        (torch.tensor([[-1, 2]]), None, "ids in"),
        (torch.ones(1, 9, dtype=torch.long), None, "max_len"),
        (torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), "one target"),
        (torch.ones(2, 3, dtype=torch.long), torch.full((2, 3), V + 1), "targets"),
    ],
)
def test_bad_inputs_raise_parameter_errors(inputs, targets, match):
    model = tiny_model("fame")
    with pytest.raises(ParameterError, match=match):
        if targets is None:
            model.score_last(inputs)
        else:
            model(inputs, targets)


def test_wide_batch_with_short_rows_is_accepted_beyond_max_len():
    model = tiny_model("sasrec").eval()
    inputs, _ = random_batch()
    wide = torch.nn.functional.pad(inputs, (5, 0))  # width 13 > max_len 8, rows still <= 8
    with torch.no_grad():
        torch.testing.assert_close(model.score_last(wide), model.score_last(inputs),
                                   rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------- FAME parts
def test_sub_embeddings_start_as_slices_of_E_and_learn():
    model = tiny_model("fame").train()
    E = model.item_embed.weight.detach()
    torch.testing.assert_close(model.item_sub_embeddings().detach(), E.view(V + 1, 4, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(*random_batch()).backward()
    optimizer.step()
    E = model.item_embed.weight.detach()
    assert not torch.allclose(model.item_sub_embeddings().detach(), E.view(V + 1, 4, 4))
    assert torch.count_nonzero(model.item_sub_embeddings()[0]) == 0


def test_slice_sub_embeddings_stay_slices():
    model = tiny_model("fame", sub_embedding="slice").train()
    assert model.item_projection is None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(*random_batch()).backward()
    optimizer.step()
    E = model.item_embed.weight.detach()
    torch.testing.assert_close(model.item_sub_embeddings().detach(), E.view(V + 1, 4, 4))
    n_learned = sum(p.numel() for p in tiny_model("fame").parameters())
    assert sum(p.numel() for p in model.parameters()) == n_learned - 16 * 16


def test_cached_item_table_follows_every_weight_change():
    model = tiny_model("fame").eval()
    inputs, targets = random_batch()
    with torch.no_grad():
        before = model.score_last(inputs)
        torch.testing.assert_close(model.score_last(inputs), before)  # served from the cache
        model.item_projection.mul_(2.0)  # an in-place edit, as an ablation would do
        assert not torch.allclose(model.score_last(inputs), before)
        fresh = tiny_model("fame")
        model.load_state_dict(fresh.state_dict())
        torch.testing.assert_close(model.score_last(inputs), fresh.eval().score_last(inputs))
    with torch.inference_mode():
        cached = model.score_last(inputs)
    # An optimizer step taken while in eval mode must still invalidate the table.
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    model(inputs, targets).backward()
    optimizer.step()
    with torch.inference_mode():
        after = model.score_last(inputs)
    with torch.no_grad():
        expected = model.queries(inputs)[:, -1] @ (
            model.item_embed.weight @ model.item_projection
        ).T
    assert not torch.allclose(after, cached)
    torch.testing.assert_close(after, expected)


def test_scores_keep_gradients_when_asked():
    """Attribution analyses differentiate score_last in eval mode: no cached constant then."""
    model = tiny_model("fame").eval()
    inputs, _ = random_batch()
    model.score_last(inputs)[:, 3].sum().backward()
    assert model.item_projection.grad is not None
    assert torch.count_nonzero(model.item_projection.grad) > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm_first", [False, True])
def test_both_norm_placements_train_and_score(kind, norm_first):
    model = tiny_model(kind, norm_first=norm_first).train()
    inputs, targets = random_batch()
    loss = model(inputs, targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert model.eval().score_last(inputs).shape == (inputs.shape[0], V + 1)


@pytest.mark.parametrize("kind", KINDS)
def test_single_layer_models(kind):
    model = tiny_model(kind, n_layers=1).eval()
    assert len(model.blocks) == (0 if kind == "fame" else 1)
    inputs, targets = random_batch()
    assert torch.isfinite(model(inputs, targets))


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast_on_cpu(kind):
    model = tiny_model(kind).train()
    inputs, targets = random_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(inputs, targets)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    reference = model(inputs, targets)
    assert abs(loss.item() - reference.item()) < 0.05 * reference.item()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_cpu(kind):
    model = tiny_model(kind).eval()
    inputs, targets = random_batch()
    with torch.no_grad():
        cpu_scores, cpu_loss = model.score_last(inputs), model(inputs, targets)
        model.cuda()
        gpu_scores = model.score_last(inputs.cuda())
        gpu_loss = model(inputs.cuda(), targets.cuda())
        _, cache = model.run_with_cache(inputs.cuda(), names_filter=model.hook_names())
    assert gpu_scores.device.type == "cuda"
    torch.testing.assert_close(gpu_scores.cpu(), cpu_scores, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(gpu_loss.cpu(), cpu_loss, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(cache["hook_logits"][:, -1], gpu_scores, rtol=1e-3, atol=1e-4)
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(inputs.cuda(), targets.cuda())
    loss.backward()
    assert torch.isfinite(loss)


def test_ablation_switches_fix_router_and_gate_to_uniform():
    cfg = ModelConfig(n_items=20, max_len=5, d_model=8, n_heads=2, n_experts=3, dropout=0.0)
    ablated = build_model(dataclasses.replace(cfg, router="uniform", gate="uniform")).eval()
    names = dict(ablated.named_parameters())
    assert "fame.router" not in names and not any(n.startswith("fame.gate.") for n in names)
    ids = torch.tensor([[0, 3, 4, 5, 6]])
    _, cache = ablated.run_with_cache(ids)
    router = cache["fame.hook_router_probs"][0, 1:]  # real positions
    gates = cache["fame.hook_gate_weights"][0, 1:]
    assert torch.allclose(router, torch.full_like(router, 1 / 3))
    assert torch.allclose(gates, torch.full_like(gates, 1 / 2))
    # and training still reaches every remaining parameter
    ablated.train()
    loss = ablated(ids, torch.tensor([[0, 4, 5, 6, 7]]))
    loss.backward()
    assert all(p.grad is not None for p in ablated.parameters())
    with pytest.raises(ParameterError, match="router"):
        dataclasses.replace(cfg, router="off")


def test_configs_written_before_the_ablation_switches_still_load():
    old = ModelConfig(n_items=20).to_dict()
    del old["router"], old["gate"]
    cfg = ModelConfig.from_dict(old)
    assert (cfg.router, cfg.gate) == ("learned", "learned")
    del old["d_model"]
    with pytest.raises(ParameterError, match="lacks keys"):
        ModelConfig.from_dict(old)
