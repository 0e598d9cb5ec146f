"""A stream's text conditioning: the prompt embedding, Krea's interpolation, per-block contexts.

Krea's release (``interpolate_prompt_embeds``): when the prompt changes, the embeddings of the
current and the new prompt are lerped at ``linspace(0, 1, interp_steps)`` (4 by default, per
update message) and the blocks after the update take them one each, the cross-attention cache
reset every time; the first of them is the current embedding itself, the last the new one. A
change during an interpolation starts from where it is. (Krea's server never reaches the new
prompt with ``interp_steps`` 1, whose only weight is 0; here 1 is a cut.)

The cache rebuild of a block (Krea's recompute) runs before that block's step of the
interpolation is taken, on the cross-attention cache the previous block left: its prompt is
the one the previous block ended with. :meth:`PromptState.begin_block` returns both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .dit import TextContext

__all__ = ["PromptState"]


class PromptState:
    """``encode(prompts) -> [1, len, dim]`` float32; ``prepare(embedding) -> TextContext``
    (the DiT's text embedding and per-layer cross-attention K/V, computed once per embedding)."""

    def __init__(self, encode: Callable[[object], torch.Tensor], prepare: Callable[[torch.Tensor], TextContext]):
        self._encode = encode
        self._prepare = prepare
        self.embedding: torch.Tensor | None = None  # what the last block used
        self.target: torch.Tensor | None = None  # the latest prompt's embedding
        self._queue: list[torch.Tensor] = []
        self._context: TextContext | None = None  # built from self.embedding
        self._previous: TextContext | None = None  # the context the last block ended with

    def set(self, prompts: object) -> None:
        """Cut to ``prompts`` (a stream's start, a reset): no interpolation."""
        self.target = self.embedding = self._encode(prompts)
        self._queue = []
        self._context = self._previous = None

    def change(self, prompts: object, steps: int) -> None:
        """Interpolate to ``prompts`` over the next ``steps`` blocks (1: a cut at the next block)."""
        target = self._encode(prompts)
        self.target = target
        if self.embedding is None:
            self.set(prompts)
            return
        if steps <= 1:
            self._queue = [target]
            return
        weights = torch.linspace(0, 1, steps, dtype=torch.float32, device=target.device)
        self._queue = [torch.lerp(self.embedding, target, w) for w in weights]

    def reset_to_target(self) -> None:
        """A reset starts over on the latest prompt (Krea's new session), no interpolation."""
        if self.target is not None:
            self.embedding = self.target
        self._queue = []
        self._context = self._previous = None

    @property
    def interpolating(self) -> bool:
        return bool(self._queue)

    def begin_block(self) -> tuple[TextContext, TextContext]:
        """(context for the cache rebuild, context for the denoising steps) of the next block."""
        if self._context is None:
            self._context = self._prepare(self.embedding)
        before = self._previous if self._previous is not None else self._context
        if self._queue:
            self.embedding = self._queue.pop(0)
            self._context = self._prepare(self.embedding)
        self._previous = self._context
        return before, self._context
