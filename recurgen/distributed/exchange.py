"""exchange: the summaries' one collective — an all-gather forward, an all-reduce backward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from .summary import DTYPE


# ---------------------------------------------------------------------------------------------
# the exchange: one all-gather forward, one all-reduce backward
# ---------------------------------------------------------------------------------------------
class Exchange(torch.autograd.Function):
    """All-gather of each rank's flat summary `[n]` into `[P, n]`; `passthrough` tensors come back unchanged.

    Backward: every rank's loss may depend on every rank's summary, so the gradient of rank r's summary is
    the sum over ranks of their gradient for row r — an all-reduce of `[P, n]`, row r kept. The
    passthrough puts this node on rank 0's backward path (rank 0 uses no gathered row, but its peers wait
    for its part of the all-reduce); the anchor makes the node exist on every rank whenever grad is on.
    """

    @staticmethod
    def forward(ctx: Any, group: Any, anchor: torch.Tensor, flat: torch.Tensor,
                *passthrough: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        world = dist.get_world_size(group)
        rows = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(rows, flat.contiguous(), group=group)
        return (torch.stack(rows), *(x.view_as(x) for x in passthrough))

    @staticmethod
    def backward(ctx: Any, grad_rows: torch.Tensor, *grad_pass: torch.Tensor) -> tuple[Any, ...]:
        total = grad_rows.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        return (None, None, total[ctx.rank], *grad_pass)


def pack(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Tensors (real or complex) as one flat fp32 vector, differentiably."""
    flat = [(torch.view_as_real(p) if p.is_complex() else p).to(DTYPE).reshape(-1) for p in parts]
    return torch.cat(flat) if flat else torch.zeros(0, dtype=DTYPE)


def unpack(flat: torch.Tensor, like: Sequence[tuple[tuple[int, ...], bool]]) -> list[torch.Tensor]:
    """The inverse of `pack`, given each part's (shape, complex)."""
    out, at = [], 0
    for shape, cplx in like:
        n = int(torch.Size(shape).numel()) * (2 if cplx else 1)
        x = flat[at: at + n]
        at += n
        out.append(torch.view_as_complex(x.reshape(*shape, 2)) if cplx else x.reshape(shape))
    return out
