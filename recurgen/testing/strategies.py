"""strategies: hypothesis strategies of valid inputs for any spec.

    from hypothesis import given
    from recurgen.testing import strategies

    @given(strategies.inputs(spec))
    def test_mine(inputs): ...        # inputs: {"q": ..., "k": ..., ..., "initial_state": (...) or None}

Shapes and dtype are drawn by hypothesis (so a failure shrinks to the smallest B, T, H and dims); the values
are drawn from the domains the spec declares by a seeded generator (`sampling`), so a counterexample is
small to print and replays from its seed. Lengths include T = 1, odd lengths and non-multiples of 16 (the
checkpoint interval, and the chunk size the planned chunk kernels will use); dims include non-powers of two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from recurgen import ir
from recurgen.testing.checks import DTYPES, Case, Inputs

__all__ = ["Case", "Inputs", "cases", "inputs"]

LENGTHS: tuple[int, ...] = (1, 2, 5, 8, 13, 17)
DIM_SIZES: tuple[int, ...] = (3, 4, 5, 8)


def _spec(spec: Any) -> ir.Spec:
    """Accept an ir.Spec, a Recurrence, or a spec name/path (loaded, so its errors surface here)."""
    if isinstance(spec, ir.Spec):
        return spec
    if hasattr(spec, "spec") and isinstance(spec.spec, ir.Spec):
        return spec.spec
    from recurgen.api import load

    return load(spec).spec


def cases(spec: Any, *, dtypes: Sequence[str] = ("fp32", "fp16", "bf16"), lengths: Sequence[int] = LENGTHS,
          batch: Sequence[int] = (1, 2), heads: Sequence[int] = (1, 2), dim_sizes: Sequence[int] = DIM_SIZES,
          initial_state: bool | None = None, checkpoints: Sequence[int] = (1, 3, 16),
          tile_budgets: Sequence[int | None] = (None, 8), varlen: bool = False) -> st.SearchStrategy[Case]:
    """Cases (shapes, dtype, initial state, checkpointing, tiling, seed) for `spec`; see `inputs`.

    `initial_state=None` draws both with and without one. Fixed dims (`dim J = 2`) keep their size. With
    `varlen`, some cases pack 1-3 sequences (lengths from `lengths`) into one row with `cu_seqlens` (modules
    generated since variable-length batches exist accept it).
    Every list is sampled with its first entry as the "simplest" value hypothesis shrinks towards.
    """
    s = _spec(spec)
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise ValueError(f"unknown dtype(s) {', '.join(unknown)}; choose from {', '.join(DTYPES)}")
    free = [d.name for d in s.dims if d.size is None]
    plain = st.builds(
        Case,
        B=st.sampled_from(list(batch)), T=st.sampled_from(list(lengths)), H=st.sampled_from(list(heads)),
        sizes=st.fixed_dictionaries({d: st.sampled_from(list(dim_sizes)) for d in free}),
        dtype=st.sampled_from(list(dtypes)),
        initial_state=st.booleans() if initial_state is None else st.just(initial_state),
        checkpoint_every=st.sampled_from(list(checkpoints)), tile_budget=st.sampled_from(list(tile_budgets)),
        seed=st.integers(0, 2**16),
    )
    if not varlen:
        return plain

    def pack(case: Case, splits: list[int]) -> Case:
        return Case(B=1, T=sum(splits), H=case.H, sizes=case.sizes, dtype=case.dtype,
                    initial_state=case.initial_state, checkpoint_every=case.checkpoint_every,
                    tile_budget=case.tile_budget, seed=case.seed, splits=tuple(splits))

    packed = st.builds(pack, plain, st.lists(st.sampled_from(list(lengths)), min_size=1, max_size=3))
    return st.one_of(plain, packed)  # shrinks towards the plain batch


def inputs(spec: Any, *, device: str = "cpu", **kwargs: Any) -> st.SearchStrategy[Inputs]:
    """Valid call arguments for `spec`: every input `[B, T, H, ...]` and param `[H, ...]` in the drawn dtype,
    values inside their declared domains, and `initial_state` (fp32, a tuple with one tensor per state) or None.

    The result is a dict (`rec(**inputs)` works) that remembers its `Case` as `.case`. Keyword arguments are
    those of `cases` (dtypes, lengths, batch, heads, dim_sizes, initial_state, checkpoints, tile_budgets).
    """
    s = _spec(spec)
    return cases(s, **kwargs).map(lambda c: c.inputs(s, device=device))
