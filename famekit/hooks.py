"""Hook points: named places where a model's internals can be read or edited.

Written in the manner of TransformerLens (our own code). A :class:`HookPoint` is an identity
module placed right after a tensor of interest has been reshaped to its *canonical* layout
(``[batch, pos, head, ...]``, see ``HookPoint.shape``). A :class:`HookedRootModule` names every
hook point after its attribute path once, at construction (``blocks.0.attn.hook_pattern``), so
that nobody maintains a list of strings, and offers:

* ``hook_names()`` -- the ordered names (registration order = order in the forward pass);
* ``hooks(fwd_hooks=[(name, fn)])`` -- a context manager that attaches ``fn(tensor, hook)``
  (returning ``None`` keeps the tensor, returning a tensor replaces it) and always removes the
  hooks again, also when the body raises;
* ``run_with_cache(*inputs, names_filter=None)`` -- runs the model's evaluation entry point and
  returns ``(output, cache)`` where ``cache[name]`` is a detached tensor.

**Opt-in hooks.** Some tensors are large (every expert's attention pattern, scores over all
items at every position); computing them costs memory and time, so their hook points are
created with ``opt_in=True`` and are *disabled* by default: the model does not even compute
their tensor. They are switched on either for one call, by naming them explicitly in
``names_filter`` / ``fwd_hooks``, or persistently with ``hook.enabled = True``
(``model.hook_dict[name].enabled = True``). ``names_filter=None`` or a callable filter only
select hooks that are enabled.

Models ask ``hook.active`` (enabled and something attached) to choose between a fast path that
never materialises a tensor (fused attention) and an explicit path that feeds the hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from famekit.errors import ParameterError, UnknownNameError

__all__ = ["HookFn", "HookPoint", "HookedRootModule", "NamesFilter"]

# fn(activation, hook=HookPoint) -> None (observe) or a tensor of the same shape (replace).
HookFn = Callable[..., torch.Tensor | None]
NamesFilter = str | Sequence[str] | Callable[[str], bool] | None


class HookPoint(nn.Module):
    """An identity module that marks a tensor as observable under its attribute path.

    Args:
        shape: the canonical layout of the tensor passed through, e.g. ``"[batch, pos, d]"``;
            models reshape to this layout *before* calling the hook so that every consumer
            sees the same axes.
        opt_in: a large tensor that the model only computes while the hook is enabled
            (see the module docstring).
    """

    def __init__(self, shape: str, opt_in: bool = False):
        super().__init__()
        self.shape = shape
        self.opt_in = opt_in
        self.enabled = not opt_in
        self.name: str | None = None  # set by HookedRootModule.setup_hooks()

    @property
    def active(self) -> bool:
        """True when the model must compute this tensor and pass it through the hook."""
        return self.enabled and bool(self._forward_hooks)

    def add_hook(self, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
        """Attach ``fn(tensor, hook=self)``; a returned tensor replaces the activation."""

        def forward_hook(module, inputs, output):
            return fn(output, hook=module)

        return self.register_forward_hook(forward_hook)

    def remove_hooks(self) -> None:
        self._forward_hooks.clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"{self.shape}" + (", opt_in" if self.opt_in else "")


class HookedRootModule(nn.Module):
    """Base of a model whose :class:`HookPoint` s are named after their attribute paths.

    Subclasses build their layers, then call :meth:`setup_hooks` at the end of ``__init__``,
    and override :meth:`run_for_cache` with the entry point ``run_with_cache`` should run.
    """

    hook_dict: dict[str, HookPoint]

    def setup_hooks(self) -> None:
        """Name every hook point after its attribute path (call once, after building)."""
        hook_dict = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                hook_dict[name] = module
        # A plain dict attribute (not a ModuleDict): the hooks are already submodules, and
        # registering them twice would duplicate their names.
        self.hook_dict = hook_dict

    def hook_names(self) -> list[str]:
        """Every hook name, in forward-pass (registration) order, opt-in ones included."""
        return list(self.hook_dict)

    def hook_shapes(self) -> dict[str, str]:
        """Hook name -> its declared canonical layout (``"[batch, pos, head, d']"``)."""
        return {name: hook.shape for name, hook in self.hook_dict.items()}

    def _hook_point(self, name: str) -> HookPoint:
        try:
            return self.hook_dict[name]
        except KeyError:
            raise UnknownNameError("hook", name, self.hook_dict) from None

    def _select(self, names_filter: NamesFilter) -> list[HookPoint]:
        """The hook points a filter selects; explicitly named opt-in hooks are included."""
        if names_filter is None:
            return [h for h in self.hook_dict.values() if h.enabled]
        if isinstance(names_filter, str):
            return [self._hook_point(names_filter)]
        if callable(names_filter):
            return [h for n, h in self.hook_dict.items() if h.enabled and names_filter(n)]
        if isinstance(names_filter, Iterable):
            return [self._hook_point(n) for n in names_filter]
        raise ParameterError(
            f"names_filter={names_filter!r} is not understood. "
            "Fix: pass None, a hook name, a list of hook names or a callable name -> bool"
        )

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = ()
              ) -> Iterator[HookedRootModule]:
        """Attach forward hooks for the duration of a ``with`` block.

        ``fwd_hooks`` is a list of ``(name_or_filter, fn)``. Named opt-in hooks are enabled
        for the block. Every hook attached here is removed, and every flag restored, on exit,
        whether the body returns or raises.
        """
        handles = []
        switched_on: list[HookPoint] = []
        try:
            for name, fn in fwd_hooks:
                points = [self._hook_point(name)] if isinstance(name, str) else self._select(name)
                for point in points:
                    if not point.enabled:
                        point.enabled = True
                        switched_on.append(point)
                    handles.append(point.add_hook(fn))
            yield self
        finally:
            for handle in handles:
                handle.remove()
            for point in switched_on:
                point.enabled = False

    def remove_all_hooks(self) -> None:
        """Detach every hook from every hook point (also ones added with ``add_hook``)."""
        for point in self.hook_dict.values():
            point.remove_hooks()

    def run_for_cache(self, *args, **kwargs):
        """The computation ``run_with_cache`` / ``run_with_hooks`` run (default: forward)."""
        return self(*args, **kwargs)

    def run_with_hooks(self, *args, fwd_hooks=(), **kwargs):
        """``run_for_cache(*args)`` with ``fwd_hooks`` attached for this call only."""
        with self.hooks(fwd_hooks):
            return self.run_for_cache(*args, **kwargs)

    def run_with_cache(self, *args, names_filter: NamesFilter = None, **kwargs):
        """Run ``run_for_cache(*args)`` and record the selected activations.

        Returns ``(output, cache)``: ``cache`` maps hook name -> detached tensor in its
        canonical layout, in the order the hooks fired. Gradients of ``output`` are kept if
        the caller has them enabled; the cached tensors never hold a graph.
        """
        cache: dict[str, torch.Tensor] = {}

        def record(tensor: torch.Tensor, hook: HookPoint) -> None:
            cache[hook.name] = tensor.detach()

        selected = self._select(names_filter)
        with self.hooks([(point.name, record) for point in selected]):
            output = self.run_for_cache(*args, **kwargs)
        return output, cache
