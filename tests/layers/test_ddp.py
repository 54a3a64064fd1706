"""DDP over a model with recurgen layers: 2 processes (gloo, CPU) compute the gradients of one training step
on halves of a batch; they equal the single-process gradients on the whole batch, and after the optimizer step
both ranks hold the same weights as the single-process run."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from recurgen.layers import RecurrentLayer

WORLD = 2
D_MODEL, HEADS, B, T = 16, 2, 4, 6  # B splits evenly, so the mean of the ranks' mean losses is the full mean
LR = 0.1


def _model() -> nn.Module:
    # Two specs with different machinery: a Householder transition with per-token gates, and a scalar
    # decay with per-head params (so DDP must also reduce the spec params' gradients).
    torch.manual_seed(0)
    return nn.Sequential(RecurrentLayer("gated_delta_rule", D_MODEL, HEADS, backend="torch"),
                         nn.RMSNorm(D_MODEL),
                         RecurrentLayer("mamba2", D_MODEL, HEADS, backend="torch"))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(B, T, D_MODEL, generator=gen), torch.randn(B, T, D_MODEL, generator=gen)


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """One SGD step; returns the gradients and the updated weights, by parameter name."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    F.mse_loss(model(x), y).backward()
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    grads = {n: p.grad.detach().clone() for n, p in inner.named_parameters() if p.grad is not None}
    opt.step()
    return {"grads": grads, "weights": {n: p.detach().clone() for n, p in inner.named_parameters()}}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)  # two processes on a small shared machine
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    try:
        model = DistributedDataParallel(_model())
        x, y = _batch()
        torch.save(_step(model, x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_gradients_equal_single_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    single = _step(_model(), *_batch())
    assert any(".params." in n for n in single["grads"])  # the spec params take part
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["grads"].keys() == single["grads"].keys()
        for name, g in single["grads"].items():
            torch.testing.assert_close(got["grads"][name], g, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
        for name, w in single["weights"].items():
            torch.testing.assert_close(got["weights"][name], w, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
