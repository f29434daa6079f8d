"""FAME and the SASRec baseline, in one readable file (docs: docs/fame-spec.md).

    cfg = ModelConfig(n_items=V, kind="fame")        # or kind="sasrec"
    model = build_model(cfg)
    loss = model(input_ids, targets)                 # int64 [B, n] left-padded, 0 = padding
    scores = model.score_last(input_ids)             # [B, V+1], next item after position -1
    scores, cache = model.run_with_cache(input_ids)  # hooks, see famekit.hooks
    model.item_sub_embeddings()                      # FAME only: [V+1, H, d']

Both models score as ``model.queries(input_ids) @ model.item_table().T``: queries [B, n, d]
(SASRec: the last hidden state; FAME: [g_1 F^1; ...; g_H F^H]) against the item table
[V+1, d] (SASRec: E; FAME: [x^1; ...; x^H] = E W_f), so any number of rows costs one matmul.

Notation (shape comments): B batch, n positions, d = d_model, H heads (= facets of FAME's last
layer), d' = d / H, N experts per head, V items (ids 1..V; 0 = padding), R scored rows.

Blocks: with ``n_layers = L``, SASRec has ordinary blocks ``blocks.0 .. blocks.L-1``; FAME has
``blocks.0 .. blocks.L-2`` and its last layer is the separate module ``fame`` (not a numbered
block). Hidden states at padding positions are finite but meaningless: padding keys are masked
out of every attention, so they never reach a real position, and they are never scored.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from famekit.errors import ParameterError, UnknownNameError
from famekit.hooks import HookedRootModule, HookPoint
from famekit.losses import softmax_cross_entropy
from famekit.validation import is_real_number, is_whole_number

__all__ = ["FAME", "FAMELayer", "ModelConfig", "SASRec", "SequentialRecommender", "build_model"]

# MODEL_KINDS (the registered kinds, in order) is defined after the classes, from MODELS.
SUB_EMBEDDINGS = ("learned", "slice")
FUSED_SCALES = ("heads", "none")
MIXERS = ("learned", "uniform")
# Fields added after checkpoints were first written: an older config.json without them means
# the behaviour that existed then (``from_dict`` fills these in; every other field is required).
ADDED_FIELDS = {"router": "learned", "gate": "learned"}


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (checkpoints store ``to_dict()``).

    Frozen: derive variants with ``dataclasses.replace(cfg, dropout=0.5)``, which validates
    again.
    """

    n_items: int  # V: item ids run 1..V, id 0 is padding; the score tables have V+1 columns
    kind: str = "fame"  # "fame" (FAME last layer + gate) or "sasrec" (the baseline)
    max_len: int = 50  # longest input sequence (real items); position ids run 1..max_len
    d_model: int = 64  # d: hidden size of items and sequence states
    n_layers: int = 2  # L: SASRec has L blocks; FAME has L-1 blocks plus its FAME layer
    n_heads: int = 4  # attention heads of every layer; in FAME's last layer H = facets
    n_experts: int = 4  # N: expert queries per head in FAME's last layer (unused by SASRec)
    dropout: float = 0.2  # rate for the embeddings, residual branches and FFN outputs
    # Rate on attention weights (every layer). Choice: 0 by default: on CPU any attention
    # dropout forces the much slower unfused kernel, and in FAME it draws N masks per head
    # (measured: docs/decisions.md, "Attention dropout is 0 by default").
    attn_dropout: float = 0.0
    norm_first: bool = False  # Choice: post-LN by default, as SASRec; True = pre-LN blocks
    sub_embedding: str = "learned"  # FAME x_v^h = E[v] W_f^h: "learned" W_f, or fixed "slice"
    # FAME's fused score P(v) = s * sum_h g_h P^h(v). Choice: s = H ("heads") by default. The
    # gate starts near uniform (g_h ~ 1/H), which makes the spec's plain sum ("none", s = 1)
    # start at 1/H of the scale of a d-dim dot product (SASRec's): a long plateau at the
    # popularity level before learning takes off. A constant factor changes no ranking and
    # no gate (measured: docs/decisions.md, "FAME's fused score is scaled by H").
    fused_scale: str = "heads"
    # Ablation switches of FAME's last layer (the benchmarks' ablations). "uniform" router:
    # every expert of a head weighs 1/N (the router is not a parameter); "uniform" gate: every
    # head weighs 1/H.
    router: str = "learned"
    gate: str = "learned"
    ffn_mult: int = 4  # point-wise FFN hidden size = ffn_mult * width (d, or d' in FFN')
    layer_norm_eps: float = 1e-8  # LayerNorm epsilon (SASRec's value)
    init_std: float = 0.02  # std of the normal init of embeddings and projections

    def __post_init__(self) -> None:
        for name in ("n_items", "max_len", "d_model", "n_layers", "n_heads", "n_experts",
                     "ffn_mult"):
            value = getattr(self, name)
            if not is_whole_number(value) or value < 1:
                self._reject(name, "a positive integer")
            object.__setattr__(self, name, int(value))
        for name in ("dropout", "attn_dropout", "layer_norm_eps", "init_std"):
            value = getattr(self, name)
            if not is_real_number(value):
                self._reject(name, "a number")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.norm_first, bool):
            self._reject("norm_first", "true or false")
        if self.kind not in MODEL_KINDS:
            self._reject("kind", " or ".join(repr(k) for k in MODEL_KINDS))
        if self.sub_embedding not in SUB_EMBEDDINGS:
            self._reject("sub_embedding", " or ".join(repr(k) for k in SUB_EMBEDDINGS))
        if self.fused_scale not in FUSED_SCALES:
            self._reject("fused_scale", " or ".join(repr(k) for k in FUSED_SCALES))
        for name in ("router", "gate"):
            if getattr(self, name) not in MIXERS:
                self._reject(name, " or ".join(repr(k) for k in MIXERS))
        if not 0.0 <= self.dropout < 1.0:
            self._reject("dropout", "in [0, 1), e.g. 0.2")
        if not 0.0 <= self.attn_dropout < 1.0:
            self._reject("attn_dropout", "in [0, 1), e.g. 0.0")
        if not self.layer_norm_eps > 0.0:
            self._reject("layer_norm_eps", "positive, e.g. 1e-8")
        if not self.init_std > 0.0:
            self._reject("init_std", "positive, e.g. 0.02")
        if self.d_model % self.n_heads:
            raise ParameterError(
                f"ModelConfig.d_model={self.d_model} is not divisible by n_heads="
                f"{self.n_heads} (each head gets d' = d_model / n_heads dimensions). "
                f"Fix: choose d_model a multiple of n_heads, e.g. d_model="
                f"{self.n_heads * max(1, round(self.d_model / self.n_heads))}"
            )

    def _reject(self, name: str, expected: str) -> None:
        raise ParameterError(
            f"ModelConfig.{name}={getattr(self, name)!r} is invalid. "
            f"Fix: set {name} to {expected}"
        )

    @property
    def d_head(self) -> int:
        """d' = d_model / n_heads, the width of one head (one facet in FAME)."""
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        """A JSON-ready dict holding every field (``from_dict`` is its inverse)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Rebuild from ``to_dict()``; unknown and missing keys are errors, not defaults.

        Exception: the fields of :data:`ADDED_FIELDS` (added later) may be missing; they get the
        value that reproduces what older famekit versions built.
        """
        if not isinstance(data, dict):
            raise ParameterError(
                f"a model config must be a dict, got {type(data).__name__}. "
                "Fix: pass the 'model' entry of a run's config.json"
            )
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(fields))
        missing = [name for name in fields if name not in data and name not in ADDED_FIELDS]
        if unknown:
            raise ParameterError(
                f"model config has unknown keys {unknown}. Fix: remove them; known keys are "
                f"{fields}"
            )
        if missing:
            raise ParameterError(
                f"model config lacks keys {missing}. Fix: write the full ModelConfig.to_dict() "
                "(every field, defaults included)"
            )
        return cls(**{**ADDED_FIELDS, **data})


def build_model(cfg: ModelConfig) -> SequentialRecommender:
    """A fresh FAME or SASRec (by ``cfg.kind``), initialised as the spec says."""
    if not isinstance(cfg, ModelConfig):
        raise ParameterError(
            f"build_model needs a ModelConfig, got {type(cfg).__name__}. "
            "Fix: build_model(ModelConfig(n_items=...)) or ModelConfig.from_dict(d)"
        )
    if cfg.kind not in MODELS:  # unreachable after validation; kept for subclassed configs
        raise UnknownNameError("model kind", cfg.kind, MODELS)
    return MODELS[cfg.kind](cfg)


# ---------------------------------------------------------------------------------- layers
def attention_mask(input_ids: torch.Tensor) -> torch.Tensor:
    """bool [B, 1, n, n], True where query i may attend to key j.

    Causal (j <= i) and padding keys masked. Every query may also attend to itself, so that a
    padding query (whose keys are all padding) has one finite entry instead of a row of -inf
    (NaN after softmax); real queries are unaffected because their own key is real.
    """
    n = input_ids.shape[1]
    device = input_ids.device
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()  # [n, n]
    itself = torch.eye(n, dtype=torch.bool, device=device)  # [n, n]
    real_key = (input_ids != 0)[:, None, None, :]  # [B, 1, 1, n]
    return causal & (real_key | itself)  # [B, 1, n, n]


def explicit_attention(q, k, v, mask, dropout_p: float, training: bool, hook: HookPoint):
    """softmax(q k^T / sqrt(d')) v with the pattern materialised and passed through ``hook``.

    Broadcasts over leading dims: q [..., Lq, d'], k and v [..., Lk, d'], mask [..., Lq, Lk].
    The scale and masking match ``F.scaled_dot_product_attention`` (tests pin the agreement).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [..., Lq, Lk]
    pattern = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # [..., Lq, Lk]
    pattern = hook(pattern)
    return F.dropout(pattern, dropout_p, training) @ v  # [..., Lq, d']


class FeedForward(nn.Module):
    """Point-wise FFN: width -> ffn_mult * width -> width, GELU (Choice: GELU, as RecBole)."""

    def __init__(self, width: int, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(width, cfg.ffn_mult * width)
        self.down = nn.Linear(cfg.ffn_mult * width, width)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention over a left-padded sequence."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn_dropout = cfg.attn_dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.hook_pattern = HookPoint("[batch, head, q_pos, k_pos]")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, n, d = x.shape
        qkv = self.qkv(x).view(B, n, 3, self.n_heads, self.d_head)  # [B, n, 3, H, d']
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x [B, H, n, d']
        p = self.attn_dropout if self.training else 0.0
        if self.hook_pattern.active:
            y = explicit_attention(q, k, v, mask, p, self.training, self.hook_pattern)
        else:  # fused kernel, never materialises the [B, H, n, n] pattern
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, n, d)  # [B, H, n, d'] -> [B, n, d]
        return self.resid_dropout(self.out(y))


class Block(nn.Module):
    """An ordinary Transformer block: self-attention and FFN, each with residual + LayerNorm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.attn = CausalSelfAttention(cfg)
        self.norm_attn = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg.d_model, cfg)
        self.norm_ffn = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.hook_resid_post = HookPoint("[batch, pos, d]")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.attn(self.norm_attn(x), mask)
            x = x + self.ffn(self.norm_ffn(x))
        else:
            x = self.norm_attn(x + self.attn(x, mask))
            x = self.norm_ffn(x + self.ffn(x))
        return self.hook_resid_post(x)  # [B, n, d]


class FAMELayer(nn.Module):
    """FAME's last layer (docs/fame-spec.md §2-3): per head, N expert queries share the
    head's keys and values; a dense router mixes the experts; each head keeps its own d'-wide
    stream F^h; a softmax gate over the heads weighs them.

    Returns the gated head representations [g_1 F^1; ...; g_H F^H] as one [B, n, d] tensor, so
    that the fused score P(v) = sum_h g_h F^h . x_v^h is a single matmul with the item table.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, H, N, dh = cfg.d_model, cfg.n_heads, cfg.n_experts, cfg.d_head
        self.n_heads, self.n_experts, self.d_head = H, N, dh
        self.norm_first = cfg.norm_first
        self.attn_dropout = cfg.attn_dropout
        # Pre-LN normalises the attention input; post-LN feeds x as it comes.
        self.norm_in = nn.LayerNorm(d, eps=cfg.layer_norm_eps) if cfg.norm_first else None
        # W_Q(n)^h for every head h and expert n, stacked; no biases, as in the spec's x W.
        self.query = nn.Linear(d, H * N * dh, bias=False)
        # W_K^h, W_V^h: one key and one value projection per head, shared by its experts.
        self.key_value = nn.Linear(d, 2 * d, bias=False)
        # W_exp^h in R^{N d' x N}: dense router per head over the concatenated expert outputs
        # (None: the "uniform" ablation, every expert weighs 1/N).
        self.router = (nn.Parameter(torch.empty(H, N * dh, N)) if cfg.router == "learned"
                       else None)
        self.expert_dropout = nn.Dropout(cfg.dropout)
        # Choice: each LayerNorm(d') is shared by all heads (like FFN') and applied per head.
        # Post-LN: norm after the expert residual and after the FFN' residual. Pre-LN: norm
        # before FFN' and one on the way out (the facet streams are scored directly).
        self.norm_attn = None if cfg.norm_first else nn.LayerNorm(dh, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(dh, cfg)  # FFN': d' -> 4d' -> d', shared by all heads
        self.norm_ffn = nn.LayerNorm(dh, eps=cfg.layer_norm_eps)
        self.norm_out = nn.LayerNorm(dh, eps=cfg.layer_norm_eps) if cfg.norm_first else None
        # W_g, b_g over [F^1; ...; F^H] (None: the "uniform" ablation, every head weighs 1/H)
        self.gate = nn.Linear(d, H) if cfg.gate == "learned" else None
        # s in P(v) = s * sum_h g_h P^h(v): H or 1 (ModelConfig.fused_scale); a plain float
        self.fused_scale = float(H) if cfg.fused_scale == "heads" else 1.0
        self.hook_expert_pattern = HookPoint("[batch, head, expert, q_pos, k_pos]", opt_in=True)
        self.hook_router_probs = HookPoint("[batch, pos, head, expert]")
        self.hook_head_repr = HookPoint("[batch, pos, head, d']")
        self.hook_gate_weights = HookPoint("[batch, pos, head]")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, n, d = x.shape
        H, N, dh = self.n_heads, self.n_experts, self.d_head
        a = self.norm_in(x) if self.norm_in is not None else x  # [B, n, d]
        q = self.query(a).view(B, n, H, N, dh).permute(0, 2, 3, 1, 4)  # [B, H, N, n, d']
        kv = self.key_value(a).view(B, n, 2, H, dh)  # [B, n, 2, H, d']
        k, v = kv.permute(2, 0, 3, 1, 4)  # 2 x [B, H, n, d']
        p = self.attn_dropout if self.training else 0.0
        if self.hook_expert_pattern.active:
            experts = explicit_attention(  # [B, H, N, n, d']
                q,  # [B, H, N, n, d']
                k.unsqueeze(2), v.unsqueeze(2),  # [B, H, 1, n, d']: shared by the N experts
                mask.unsqueeze(2),  # [B, 1, 1, n, n]
                p, self.training, self.hook_expert_pattern,
            )
        else:
            # Fold the experts into the query axis: the N queries of a head share its keys
            # and values, so one fused attention call covers all of them.
            q_folded = q.reshape(B, H, N * n, dh)  # [B, H, N*n, d']
            mask_folded = (  # [B, 1, 1, n, n] -> [B, 1, N, n, n] -> [B, 1, N*n, n]
                mask.unsqueeze(2).expand(B, 1, N, n, n).reshape(B, 1, N * n, n)
            )
            experts = F.scaled_dot_product_attention(q_folded, k, v, attn_mask=mask_folded,
                                                     dropout_p=p)  # [B, H, N*n, d']
            experts = experts.view(B, H, N, n, dh)  # [B, H, N, n, d']
        experts = experts.permute(0, 3, 1, 2, 4)  # [B, n, H, N, d']
        concatenated = experts.reshape(B, n, H, N * dh)  # [f(1); ...; f(N)] per head
        if self.router is not None:
            router_logits = torch.einsum(  # [B, n, H, N*d'] x [H, N*d', N] -> [B, n, H, N]
                "bthk,hke->bthe", concatenated, self.router
            )
        else:
            router_logits = concatenated.new_zeros(B, n, H, N)  # softmax -> 1/N each
        router_probs = self.hook_router_probs(router_logits.softmax(dim=-1))  # [B, n, H, N]
        mixed = torch.einsum("bthe,bthed->bthd", router_probs, experts)  # [B, n, H, d']
        # Choice (docs/fame-spec.md §2): heads are not concatenated and have no output
        # projection; the residual of head h is the h-th d'-slice of x.
        slices = x.reshape(B, n, H, dh)  # [B, n, d] -> [B, n, H, d']
        if self.norm_first:
            h = slices + self.expert_dropout(mixed)
            h = self.norm_out(h + self.ffn(self.norm_ffn(h)))
        else:
            h = self.norm_attn(slices + self.expert_dropout(mixed))
            h = self.norm_ffn(h + self.ffn(h))
        head_repr = self.hook_head_repr(h)  # [B, n, H, d'] = F^h
        concat_heads = head_repr.reshape(B, n, d)  # [F^1; ...; F^H]: [B, n, H, d'] -> [B, n, d]
        gate_logits = (self.gate(concat_heads) if self.gate is not None  # [B, n, H]
                       else concat_heads.new_zeros(B, n, H))  # softmax -> 1/H each
        gates = self.hook_gate_weights(gate_logits.softmax(dim=-1))  # [B, n, H]
        gated = gates.unsqueeze(-1) * head_repr  # [B, n, H, 1] * [B, n, H, d'] -> [B, n, H, d']
        # s [g_1 F^1; ...; g_H F^H]: the fused score is s * sum_h g_h P^h (see fused_scale)
        return gated.reshape(B, n, d) * self.fused_scale  # [B, n, d]


# ---------------------------------------------------------------------------------- models
class SequentialRecommender(HookedRootModule):
    """What FAME and SASRec share: the embedding, the backbone blocks and the interface.

    A subclass supplies ``sequence_queries(x, mask) -> [B, n, d]`` (the last layer) and
    ``item_table() -> [V+1, d]``; the score of item v after position t is then
    ``queries[t] . table[v]``, one matmul for any number of rows.
    """

    def __init__(self, cfg: ModelConfig, n_blocks: int):
        super().__init__()
        self.config = cfg
        # Row 0 of E is padding: kept zero by padding_idx (no gradient through the lookup)
        # and by scoring only items 1..V in training (no gradient through the output side).
        self.item_embed = nn.Embedding(cfg.n_items + 1, cfg.d_model, padding_idx=0)
        self.hook_item_embed = HookPoint("[batch, pos, d]")
        # Position ids count from each row's first real item (1..len); 0 = padding position.
        self.pos_embed = nn.Embedding(cfg.max_len + 1, cfg.d_model, padding_idx=0)
        self.hook_pos_embed = HookPoint("[batch, pos, d]")
        self.embed_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(n_blocks))

    def _finish_init(self) -> None:
        """Initialise weights (docs/fame-spec.md §1), name the hooks; subclasses call it last."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        self.hook_logits = HookPoint("[batch, pos, V+1]", opt_in=True)
        self.setup_hooks()

    # -------------------------------------------------------------- subclass interface
    def sequence_queries(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def item_table(self) -> torch.Tensor:
        raise NotImplementedError

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """[M] item ids -> [M, d]: their rows of ``item_table()``, without building the whole
        table (what an objective on a sample of items needs; gradients flow)."""
        return self.item_embed(items)  # [M, d]

    # -------------------------------------------------------------- shared computation
    def _check_ids(self, name: str, ids: torch.Tensor, like: torch.Tensor | None = None) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32):
            raise ParameterError(
                f"{name} must be an int64 tensor [batch, positions], got "
                f"{getattr(ids, 'dtype', type(ids).__name__)}. "
                "Fix: torch.as_tensor(famekit.batching.pad_left(...))"
            )
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ParameterError(
                f"{name} must have shape [batch, positions] with positions >= 1, got "
                f"{tuple(ids.shape)}. Fix: build batches with famekit.batching.pad_left"
            )
        if like is not None and ids.shape != like.shape:
            raise ParameterError(
                f"{name} has shape {tuple(ids.shape)} but input_ids has {tuple(like.shape)}. "
                "Fix: give one target per input position (0 where none is wanted)"
            )
        if ids.numel():
            lo, hi = torch.aminmax(ids)
            if lo < 0 or hi > self.config.n_items:
                raise ParameterError(
                    f"{name} holds ids in [{int(lo)}, {int(hi)}] but the model knows items "
                    f"1..{self.config.n_items} (0 = padding). Fix: use the dataset the model "
                    "was built for (ModelConfig.n_items = dataset.n_items)"
                )

    def _embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Item + position embedding, LayerNorm, dropout: [B, n] -> [B, n, d]."""
        real = input_ids != 0  # [B, n]
        positions = real.cumsum(dim=1) * real  # [B, n]: 1..len from the first real item
        if input_ids.shape[1] > self.config.max_len:
            longest = int(positions.max()) if positions.numel() else 0
            if longest > self.config.max_len:
                raise ParameterError(
                    f"input_ids holds a sequence of {longest} items but ModelConfig.max_len="
                    f"{self.config.max_len}. Fix: keep the last max_len items "
                    "(famekit.batching.pad_left(seqs, max_len))"
                )
        items = self.hook_item_embed(self.item_embed(input_ids))  # [B, n, d]
        pos = self.hook_pos_embed(self.pos_embed(positions))  # [B, n, d]
        return self.embed_dropout(self.embed_norm(items + pos))  # [B, n, d]

    def queries(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, n] ids -> [B, n, d] vectors whose dot products with ``item_table()`` are scores."""
        x = self._embed(input_ids)  # [B, n, d]
        mask = attention_mask(input_ids)  # [B, 1, n, n]
        for block in self.blocks:
            x = block(x, mask)  # [B, n, d]
        return self.sequence_queries(x, mask)  # [B, n, d]

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over all items at the positions whose target is not 0.

        Which positions predict is the caller's choice, made through ``targets``. Choice
        (docs/fame-spec.md §4): the trainer gives every non-padding position its next item
        (one pass per sequence, "SASRec with CE"); RecBole's prefix augmentation
        ("last_position") is the same call with only the last column of ``targets`` non-zero.
        Only those rows are scored: select them first, then [R, d] x [d, V] through
        :func:`famekit.losses.softmax_cross_entropy` (docs/fame-spec.md §4: 3-4x faster than
        scoring every padded position; 8 MiB row chunks bound the logits held at once).
        Choice: the padding column is left out of the softmax by scoring items 1..V only and
        shifting the targets by one (no -inf column, and no gradient reaches E[0]).
        A batch without any target gives a zero loss that is still connected to every
        parameter, so that DDP's gradient all-reduce sees the same graph on every rank.
        """
        self._check_ids("input_ids", input_ids)
        self._check_ids("targets", targets, like=input_ids)
        queries = self.queries(input_ids)  # [B, n, d]
        table = self.item_table()  # [V+1, d]
        selected = targets != 0  # [B, n]
        if not bool(selected.any()):
            return queries.sum() * 0.0 + table.sum() * 0.0
        if self.hook_logits.active:  # a hook sees (and may replace) the full logits
            logits = self.hook_logits(queries @ table.T)  # [B, n, V+1]
            logits = logits[selected][:, 1:]  # [R, V]
            return F.cross_entropy(logits.float(), targets[selected] - 1)
        # [R, d] against [V, d]; famekit.losses.CHUNK_ELEMENTS bounds the logits held at once
        return softmax_cross_entropy(queries[selected], table[1:], targets[selected] - 1)

    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, V+1] scores of the next item after position -1 (the last, most recent item).

        Nothing is masked: column 0 (padding) and the history hold whatever the model
        computes; the evaluator masks them.
        """
        self._check_ids("input_ids", input_ids)
        queries = self.queries(input_ids)  # [B, n, d]
        table = self.item_table()  # [V+1, d]
        if self.hook_logits.active:
            return self.hook_logits(queries @ table.T)[:, -1]  # [B, n, V+1] -> [B, V+1]
        return queries[:, -1] @ table.T  # [B, d] x [d, V+1] -> [B, V+1]

    def run_for_cache(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``run_with_cache`` / ``run_with_hooks`` score the next item (``score_last``)."""
        return self.score_last(input_ids)


class SASRec(SequentialRecommender):
    """The baseline: L ordinary blocks and one dot product against the item embedding E."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, n_blocks=cfg.n_layers)
        # Pre-LN leaves the residual stream unnormalised: normalise it before scoring.
        self.final_norm = (
            nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm_first else None
        )
        self._finish_init()

    def sequence_queries(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.final_norm(x) if self.final_norm is not None else x  # [B, n, d]

    def item_table(self) -> torch.Tensor:
        return self.item_embed.weight  # [V+1, d]


class FAME(SequentialRecommender):
    """Facet-Aware Multi-Head Mixture-of-Experts: L-1 blocks, then the FAME layer (``fame``).

    Item sub-embeddings x_v^h = E[v] W_f^h. Stacking the H projections W_f^h in R^{d x d'}
    side by side gives one d x d matrix W_f, and the item table [x^1; ...; x^H] = E W_f.
    Choice (docs/fame-spec.md §3): W_f is learned and starts as the identity, i.e. E W_f^h
    starts as the h-th d'-slice of E (a small random W_f made FAME learn ~3x slower, measured
    there); with ``sub_embedding="slice"`` W_f stays the identity and is not a parameter at all.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, n_blocks=cfg.n_layers - 1)
        self.fame = FAMELayer(cfg)
        if cfg.sub_embedding == "learned":
            self.item_projection = nn.Parameter(torch.empty(cfg.d_model, cfg.d_model))  # W_f
        else:
            self.item_projection = None
        self._table_cache: tuple | None = None
        self._finish_init()
        with torch.no_grad():
            if self.fame.router is not None:
                nn.init.normal_(self.fame.router, std=cfg.init_std)
            if self.item_projection is not None:
                self.item_projection.copy_(torch.eye(cfg.d_model))

    def sequence_queries(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fame(x, mask)  # [B, n, d] = [g_1 F^1; ...; g_H F^H]

    def item_table(self) -> torch.Tensor:
        """[V+1, d] = [x^1; ...; x^H] per item, i.e. E W_f.

        Evaluation (eval mode, gradients off) reuses the table while E and W_f are unchanged:
        the cache key holds the tensors' identities and version counters, which every
        in-place change (optimizer step, ``load_state_dict``, manual edits) increments, and
        ``train()`` / ``eval()`` drop it.
        """
        weight = self.item_embed.weight  # [V+1, d]
        if self.item_projection is None:
            return weight
        if self.training or torch.is_grad_enabled():
            return weight @ self.item_projection  # [V+1, d] x [d, d] -> [V+1, d]
        proj = self.item_projection
        key = (id(weight), weight.data_ptr(), weight._version,
               id(proj), proj.data_ptr(), proj._version, weight.device, weight.dtype)
        if self._table_cache is None or self._table_cache[0] != key:
            # Full precision once; autocast casts it per call at no real cost.
            with torch.autocast(weight.device.type, enabled=False):
                self._table_cache = (key, weight @ proj)  # [V+1, d]
        return self._table_cache[1]

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """[M] item ids -> [M, d] = E[items] W_f, i.e. [x^1; ...; x^H] of those items."""
        rows = self.item_embed(items)  # [M, d]
        return rows if self.item_projection is None else rows @ self.item_projection

    def train(self, mode: bool = True):
        self._table_cache = None
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .half(): drop the cached table
        self._table_cache = None
        return super()._apply(fn, *args, **kwargs)

    @property
    def fused_scale(self) -> float:
        """s in the fused score P(v) = s * sum_h g_h P^h(v) (``ModelConfig.fused_scale``)."""
        return self.fame.fused_scale

    def item_sub_embeddings(self) -> torch.Tensor:
        """[V+1, H, d']: x_v^h for every item v and head h (row 0 = padding = zeros)."""
        cfg = self.config
        return self.item_table().reshape(  # [V+1, d] -> [V+1, H, d']
            cfg.n_items + 1, cfg.n_heads, cfg.d_head
        )


# The model kinds: a variant registers here in one line (its class takes a ModelConfig).
MODELS: dict[str, type[SequentialRecommender]] = {"fame": FAME, "sasrec": SASRec}
MODEL_KINDS = tuple(MODELS)
