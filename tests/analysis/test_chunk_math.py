"""The chunk forms `explain` prints, executed literally in torch for one chunk, equal the recurrence.

Each test transcribes the printed lines (chunk.py) into torch, so a wrong formula in the report fails
here: rows i of Q, K, V are tokens, b the cumulative log-decay, M the causal mask, S0 the state
entering the chunk.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from recurgen.analysis import analyze
from recurgen.frontend import load_spec

BT, K, V = 6, 4, 3


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(seed: int) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    k = torch.randn(BT, K, generator=g)
    return {"q": torch.randn(BT, K, generator=g), "k": k / k.norm(dim=-1, keepdim=True),
            "v": torch.randn(BT, V, generator=g), "g_scalar": -torch.rand(BT, generator=g),
            "g": -torch.rand(BT, K, generator=g), "beta": torch.rand(BT, generator=g),
            "u": torch.randn(BT, K, generator=g) * 0.3, "w": torch.randn(BT, K, generator=g) * 0.3,
            "s0": torch.randn(K, V, generator=g)}


def _sequential(a_of: object, d: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    s = d["s0"]
    outs = []
    for i in range(BT):
        a, b = a_of(i)  # type: ignore[operator]
        s = a @ s + b
        outs.append(d["q"][i] @ s)
    return torch.stack(outs), s


M = torch.tril(torch.ones(BT, BT, dtype=torch.float64))  # causal mask, j <= i


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scalar_chunk(seed: int) -> None:
    d = _data(seed)
    q, k, v, g = d["q"], d["k"], d["v"], d["g_scalar"]
    want_o, want_s = _sequential(lambda i: (torch.exp(g[i]) * torch.eye(K), torch.outer(k[i], v[i])), d)
    b = torch.cumsum(g, 0)
    dmask = torch.exp(b[:, None] - b[None, :]) * M  # D_ij = exp(b_i − b_j) for j ≤ i
    o = (q @ k.T * dmask) @ v + torch.diag(torch.exp(b)) @ q @ d["s0"]
    s = torch.exp(b[-1]) * d["s0"] + (torch.diag(torch.exp(b[-1] - b)) @ k).T @ v
    torch.testing.assert_close(o, want_o)
    torch.testing.assert_close(s, want_s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diagonal_rows_chunk(seed: int) -> None:
    d = _data(seed)
    q, k, v, g = d["q"], d["k"], d["v"], d["g"]
    want_o, want_s = _sequential(lambda i: (torch.diag(torch.exp(g[i])), torch.outer(k[i], v[i])), d)
    b = torch.cumsum(g, 0)  # [BT, K]
    o = ((q * torch.exp(b)) @ (k * torch.exp(-b)).T * M) @ v + (q * torch.exp(b)) @ d["s0"]
    s = torch.diag(torch.exp(b[-1])) @ d["s0"] + (k * torch.exp(b[-1] - b)).T @ v
    torch.testing.assert_close(o, want_o)
    torch.testing.assert_close(s, want_s)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_householder_chunk(seed: int, gated: bool) -> None:
    d = _data(seed)
    q, k, v, beta = d["q"], d["k"], d["v"], d["beta"]
    g = d["g_scalar"] if gated else torch.zeros(BT)

    def step(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.exp(g[i]) * (torch.eye(K) - beta[i] * torch.outer(k[i], k[i])),
                beta[i] * torch.outer(k[i], v[i]))

    want_o, want_s = _sequential(step, d)
    b = torch.cumsum(g, 0)
    gamma = torch.exp(b[:, None] - b[None, :]) * M
    B = torch.diag(beta)
    T = torch.linalg.inv(torch.eye(BT) + torch.tril(B @ (k @ k.T * gamma), -1)) @ B
    W = T @ (torch.diag(torch.exp(b)) @ k)
    U = T @ v
    new = U - W @ d["s0"]
    o = torch.diag(torch.exp(b)) @ q @ d["s0"] + (q @ k.T * gamma) @ new
    s = torch.exp(b[-1]) * d["s0"] + (torch.diag(torch.exp(b[-1] - b)) @ k).T @ new
    torch.testing.assert_close(o, want_o)
    torch.testing.assert_close(s, want_s)


@pytest.mark.parametrize("seed", [0, 1])
def test_kda_chunk(seed: int) -> None:
    d = _data(seed)
    q, k, v, beta, g = d["q"], d["k"], d["v"], d["beta"], d["g"]

    def step(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return ((torch.eye(K) - beta[i] * torch.outer(k[i], k[i])) @ torch.diag(torch.exp(g[i])),
                beta[i] * torch.outer(k[i], v[i]))

    want_o, want_s = _sequential(step, d)
    b = torch.cumsum(g, 0)
    B = torch.diag(beta)
    T = torch.linalg.inv(torch.eye(BT) + torch.tril(B @ (k * torch.exp(b)) @ (k * torch.exp(-b)).T, -1)) @ B
    W = T @ (k * torch.exp(b))
    new = T @ v - W @ d["s0"]
    o = (q * torch.exp(b)) @ d["s0"] + ((q * torch.exp(b)) @ (k * torch.exp(-b)).T * M) @ new
    s = torch.diag(torch.exp(b[-1])) @ d["s0"] + (k * torch.exp(b[-1] - b)).T @ new
    torch.testing.assert_close(o, want_o)
    torch.testing.assert_close(s, want_s)


@pytest.mark.parametrize("seed", [0, 1])
def test_dplr_chunk(seed: int) -> None:
    d = _data(seed)
    q, k, v, g, u, w = d["q"], d["k"], d["v"], d["g"], d["u"], d["w"]
    want_o, want_s = _sequential(lambda i: (torch.diag(torch.exp(g[i])) + torch.outer(u[i], w[i]),
                                            torch.outer(k[i], v[i])), d)
    b = torch.cumsum(g, 0)
    b_prev = torch.cat([torch.zeros(1, K), b[:-1]])
    w_hat, u_hat, k_hat = w * torch.exp(b_prev), u * torch.exp(-b), k * torch.exp(-b)
    P = torch.linalg.solve(torch.eye(BT) - torch.tril(w_hat @ u_hat.T, -1),
                           w_hat @ d["s0"] + torch.tril(w_hat @ k_hat.T, -1) @ v)
    qb = q * torch.exp(b)
    o = qb @ d["s0"] + torch.tril(qb @ u_hat.T) @ P + torch.tril(qb @ k_hat.T) @ v
    s = torch.diag(torch.exp(b[-1])) @ (d["s0"] + u_hat.T @ P + k_hat.T @ v)
    torch.testing.assert_close(o, want_o)
    torch.testing.assert_close(s, want_s)


@pytest.mark.parametrize(("name", "needles"), [
    ("simple_gla", ["D_ij = exp(b_i − b_j) for j ≤ i", "O = (Q Kᵀ ⊙ D) V + diag(exp(b)) Q S₀",
                    "S_BT = exp(b_BT) S₀ + (diag(exp(b_BT − b)) K)ᵀ V"]),
    ("gla", ["O = ((Q ⊙ exp(b)) (K ⊙ exp(−b))ᵀ ⊙ M) V + (Q ⊙ exp(b)) S₀",
             "S_BT = diag(exp(b_BT)) S₀ + (K ⊙ exp(b_BT − b))ᵀ V"]),
    ("gated_delta_rule", ["T = (I + tril(B (K Kᵀ ⊙ Γ), −1))⁻¹ B", "W = T (diag(exp(b)) K),  U = T V,  Ũ = U − W S₀",
                          "O = diag(exp(b)) Q S₀ + (Q Kᵀ ⊙ Γ) Ũ"]),
    ("kda", ["T = (I + tril(B (K ⊙ exp(b)) (K ⊙ exp(−b))ᵀ, −1))⁻¹ B", "W = T (K ⊙ exp(b)),  U = T V,  Ũ = U − W S₀",
             "S_BT = diag(exp(b_BT)) S₀ + (K ⊙ exp(b_BT − b))ᵀ Ũ"]),
    ("rwkv7", ["P = (I − tril(N̂ Ûᵀ, −1))⁻¹ (N̂ S₀ + tril(N̂ K̂ᵀ, −1) V)",
               "O = (Q ⊙ exp(b)) S₀ + tril((Q ⊙ exp(b)) Ûᵀ) P + tril((Q ⊙ exp(b)) K̂ᵀ) V",
               "S_BT = diag(exp(b_BT)) (S₀ + Ûᵀ P + K̂ᵀ V)"]),
])
def test_the_report_prints_these_formulas(name: str, needles: list[str]) -> None:
    text = "\n".join(analyze(load_spec(name)[0]).states[0].chunk.lines)
    for n in needles:
        assert n in text
