"""Contract tests of the hook points (docs/fame-spec.md §6): names, shapes, invariants,
reproducibility."""

from __future__ import annotations

import dataclasses
import pytest
import torch

from famekit.batching import pad_left
from famekit.errors import ParameterError, UnknownNameError
from famekit.hooks import HookPoint
from famekit.model import ModelConfig, build_model

V, B, D, H, N, DH = 23, 5, 16, 4, 3, 4  # items, batch, d, heads, experts, d'
KINDS = ["fame", "sasrec"]

FAME_HOOKS = {  # name -> shape for a [B, n] batch, in forward order (n_layers = 2)
    "hook_item_embed": "B n D",
    "hook_pos_embed": "B n D",
    "blocks.0.attn.hook_pattern": "B H n n",
    "blocks.0.hook_resid_post": "B n D",
    "fame.hook_expert_pattern": "B H N n n",
    "fame.hook_router_probs": "B n H N",
    "fame.hook_head_repr": "B n H DH",
    "fame.hook_gate_weights": "B n H",
    "hook_logits": "B n V1",
}
SASREC_HOOKS = {
    "hook_item_embed": "B n D",
    "hook_pos_embed": "B n D",
    "blocks.0.attn.hook_pattern": "B H n n",
    "blocks.0.hook_resid_post": "B n D",
    "blocks.1.attn.hook_pattern": "B H n n",
    "blocks.1.hook_resid_post": "B n D",
    "hook_logits": "B n V1",
}
OPT_IN = {"fame.hook_expert_pattern", "hook_logits"}


def tiny_model(kind: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    fields = {"n_items": V, "kind": kind, "max_len": 8, "d_model": D, "n_layers": 2,
              "n_heads": H, "n_experts": N, "dropout": 0.0}
    fields.update(overrides)
    return build_model(ModelConfig(**fields)).eval()


def batch(seed: int = 0, width: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(1, V + 1, (1 + row % width,), generator=gen).numpy()
            for row in range(B)]
    return torch.as_tensor(pad_left(seqs, width, width=width))


def expected_shape(spec: str, n: int) -> tuple[int, ...]:
    sizes = {"B": B, "n": n, "D": D, "H": H, "N": N, "DH": DH, "V1": V + 1}
    return tuple(sizes[axis] for axis in spec.split())


# ---------------------------------------------------------------------------------- names
@pytest.mark.parametrize("kind, hooks", [("fame", FAME_HOOKS), ("sasrec", SASREC_HOOKS)])
def test_hook_names_are_ordered_attribute_paths(kind, hooks):
    model = tiny_model(kind)
    assert model.hook_names() == list(hooks)
    for name in model.hook_names():
        point = model.get_submodule(name)
        assert isinstance(point, HookPoint) and point.name == name
        assert point.opt_in == (name in OPT_IN)
    # hook points hold no weights and do not show up in checkpoints
    assert not any("hook" in key for key in model.state_dict())


def test_single_layer_fame_has_no_numbered_blocks():
    model = tiny_model("fame", n_layers=1)
    assert model.hook_names() == [n for n in FAME_HOOKS if not n.startswith("blocks.")]


@pytest.mark.parametrize("kind, hooks", [("fame", FAME_HOOKS), ("sasrec", SASREC_HOOKS)])
def test_every_hook_has_its_canonical_shape(kind, hooks):
    model = tiny_model(kind)
    inputs = batch(width=7)
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names_filter=model.hook_names())
    assert list(cache) == list(hooks)  # fired in forward order
    for name, spec in hooks.items():
        assert tuple(cache[name].shape) == expected_shape(spec, 7), name
    # Each hook declares its layout where it is created; the axes match the tensor.
    for name, layout in model.hook_shapes().items():
        axes = [axis.strip() for axis in layout.strip("[]").split(",")]
        assert len(axes) == cache[name].ndim and axes[0] == "batch", name


# ---------------------------------------------------------------------------------- selection
def test_opt_in_hooks_are_off_unless_named_or_enabled():
    model = tiny_model("fame")
    inputs = batch()
    _, cache = model.run_with_cache(inputs)
    assert set(cache) == set(FAME_HOOKS) - OPT_IN
    _, cache = model.run_with_cache(inputs, names_filter=lambda name: "pattern" in name)
    assert set(cache) == {"blocks.0.attn.hook_pattern"}
    _, cache = model.run_with_cache(inputs, names_filter="fame.hook_expert_pattern")
    assert set(cache) == {"fame.hook_expert_pattern"}
    assert not model.fame.hook_expert_pattern.enabled  # switched on for that call only
    model.hook_logits.enabled = True
    _, cache = model.run_with_cache(inputs)
    assert "hook_logits" in cache and "fame.hook_expert_pattern" not in cache
    with pytest.raises(UnknownNameError, match="fame.hook_gates"):
        model.run_with_cache(inputs, names_filter=["fame.hook_gates"])


def test_filters_in_fwd_hooks_and_hook_management():
    model = tiny_model("sasrec")
    seen = []
    with model.hooks([(lambda name: name.endswith("resid_post"), lambda t, hook: seen.append(
            hook.name))]):
        model.score_last(batch())
    assert seen == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    model.blocks[0].hook_resid_post.add_hook(lambda t, hook: seen.append("manual"))
    model.run_with_hooks(batch(), fwd_hooks=[("hook_item_embed", lambda t, hook: None)])
    assert seen[-1] == "manual"
    model.remove_all_hooks()
    model.score_last(batch())
    assert seen[-1] == "manual" and len(seen) == 3
    with pytest.raises(ParameterError, match="names_filter"):
        model.run_with_cache(batch(), names_filter=3)


def test_cache_is_detached_and_output_keeps_its_graph():
    model = tiny_model("fame")
    scores, cache = model.run_with_cache(batch())
    assert scores.requires_grad
    assert not any(t.requires_grad for t in cache.values())


@pytest.mark.parametrize("kind", KINDS)
def test_hooks_context_removes_hooks_even_when_the_body_raises(kind):
    model = tiny_model(kind)
    seen = []

    def spy(tensor, hook):
        seen.append(hook.name)

    hooks = [("blocks.0.hook_resid_post", spy), ("hook_logits", spy)]
    with pytest.raises(RuntimeError, match="boom"), model.hooks(hooks):
        assert model.hook_logits.enabled
        model.score_last(batch())
        raise RuntimeError("boom")
    assert seen == ["blocks.0.hook_resid_post", "hook_logits"]
    assert not any(point._forward_hooks for point in model.hook_dict.values())
    assert not model.hook_logits.enabled
    model.score_last(batch())
    assert len(seen) == 2  # nothing fires any more


def test_a_hook_can_edit_an_activation():
    """Forcing the gate onto one head leaves exactly that head's scores."""
    model = tiny_model("fame")
    inputs = batch()

    def only_head_2(gates, hook):
        return torch.nn.functional.one_hot(torch.full_like(gates[..., 0], 2).long(), H).to(gates)

    with torch.no_grad():
        plain, cache = model.run_with_cache(inputs)
        edited = model.run_with_hooks(inputs, fwd_hooks=[("fame.hook_gate_weights", only_head_2)])
        head_2 = cache["fame.hook_head_repr"][:, -1, 2] @ model.item_sub_embeddings()[:, 2].T
        head_2 = head_2 * model.fused_scale
        assert not torch.allclose(edited, plain)
        torch.testing.assert_close(edited, head_2)
        torch.testing.assert_close(model.score_last(inputs), plain)  # the edit is gone


# ---------------------------------------------------------------------------------- invariants
def test_gates_and_router_probabilities_are_distributions():
    model = tiny_model("fame", seed=4)
    inputs = batch()
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names_filter=model.hook_names())
    gates, router = cache["fame.hook_gate_weights"], cache["fame.hook_router_probs"]
    torch.testing.assert_close(gates.sum(-1), torch.ones(gates.shape[:-1]))
    torch.testing.assert_close(router.sum(-1), torch.ones(router.shape[:-1]))
    assert (gates > 0).all() and (router > 0).all()
    # Attention patterns: rows sum to 1 and give nothing to padding or future keys.
    for name in ("blocks.0.attn.hook_pattern", "fame.hook_expert_pattern"):
        pattern = cache[name]
        real = inputs != 0
        rows = pattern.sum(-1)
        torch.testing.assert_close(rows, torch.ones_like(rows))
        n = inputs.shape[1]
        future = torch.ones(n, n, dtype=torch.bool).triu(1)
        assert (pattern[..., future] == 0).all()
        real_query_padding_key = real[:, :, None] & ~real[:, None, :]  # [B, q_pos, k_pos]
        while real_query_padding_key.ndim < pattern.ndim:
            real_query_padding_key = real_query_padding_key.unsqueeze(1)  # head/expert axes
        assert real_query_padding_key.any()
        assert (pattern.masked_select(real_query_padding_key) == 0).all()


def test_fused_scores_are_reproducible_from_the_cache():
    model = tiny_model("fame", seed=2)
    inputs = batch()
    with torch.no_grad():
        scores, cache = model.run_with_cache(inputs)
        sub = model.item_sub_embeddings()  # [V+1, H, d']
    assert sub.shape == (V + 1, H, DH)
    head_repr = cache["fame.hook_head_repr"][:, -1]  # [B, H, d']
    gates = cache["fame.hook_gate_weights"][:, -1]  # [B, H]
    per_head = torch.einsum("bhd,vhd->bhv", head_repr, sub)  # [B, H, V+1]: P^h(v)
    fused = model.fused_scale * (gates.unsqueeze(-1) * per_head).sum(1)  # [B, V+1]
    assert model.fused_scale == H  # the default ModelConfig.fused_scale="heads"
    torch.testing.assert_close(fused, scores, rtol=1e-5, atol=1e-6)
    # The gate really depends on the sequence (it is not a constant mixture).
    assert not torch.allclose(gates[0], gates[1])


def test_sasrec_scores_are_reproducible_from_the_last_residual():
    model = tiny_model("sasrec")
    with torch.no_grad():
        scores, cache = model.run_with_cache(batch())
    last = cache["blocks.1.hook_resid_post"][:, -1]  # [B, d]
    torch.testing.assert_close(scores, last @ model.item_embed.weight.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_explicit_attention_path_equals_fused_path(kind):
    model = tiny_model(kind, seed=5)
    inputs = batch(seed=1)
    attention_hooks = [n for n in model.hook_names() if "pattern" in n]
    with torch.no_grad():
        fast_scores = model.score_last(inputs)
        _, fast_cache = model.run_with_cache(inputs, names_filter=["hook_logits"])
        explicit_scores, cache = model.run_with_cache(
            inputs, names_filter=attention_hooks + ["hook_logits"]
        )
    assert set(attention_hooks) <= set(cache)  # the explicit path really ran
    torch.testing.assert_close(explicit_scores, fast_scores, rtol=1e-5, atol=1e-5)
    real = inputs != 0  # padding positions hold unspecified values
    torch.testing.assert_close(cache["hook_logits"][real], fast_cache["hook_logits"][real],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_explicit_path_trains_like_the_fused_path(kind):
    """Same loss and gradients with the patterns hooked (dropout 0)."""
    inputs = batch(seed=2)
    targets = torch.roll(inputs, -1, dims=1) * (inputs != 0)
    grads = []
    for hooked in (False, True):
        model = tiny_model(kind, seed=6).train()
        names = [n for n in model.hook_names() if "pattern" in n] if hooked else []
        with model.hooks([(name, lambda t, hook: None) for name in names]):
            model(inputs, targets).backward()
        grads.append(model.item_embed.weight.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_fused_scale_none_is_the_plain_gated_sum():
    plain = tiny_model("fame", seed=3)
    unscaled = build_model(dataclasses.replace(plain.config, fused_scale="none")).eval()
    unscaled.load_state_dict(plain.state_dict())
    inputs = batch()
    with torch.no_grad():
        torch.testing.assert_close(plain.score_last(inputs), H * unscaled.score_last(inputs))
    assert unscaled.fused_scale == 1.0
