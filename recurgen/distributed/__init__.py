"""distributed: context parallelism for any spec — the time axis split across the ranks of a process group.

    from recurgen.distributed import ContextParallel
    cp = ContextParallel(recurgen.load("gla"))        # torch.distributed already initialised
    o, final_state = cp(q, k, v, g, output_final_state=True)   # this rank's slice [B, T/P, H, ...]

Rank r holds tokens `[r·T/P, (r+1)·T/P)`. Every state update is affine, `S_t = A_t S_{t-1} + b_t`, so a slice
is summarised by one element `(A, b)`: `A` the product of its transitions, `b` its final state from zero.
Elements compose with the associative operator `(A₂, b₂) ∘ (A₁, b₁) = (A₂A₁, A₂b₁ + b₂)`, and the state
entering rank r is the exclusive prefix of the elements of ranks `0 … r-1` applied to the initial state.

One call does, per rank:
1. rank 0 runs its slice from the caller's initial state; its final state is already the state entering
   rank 1 (so rank 0 needs no `A`). Ranks r > 0 run their slice from zero (its final state is `b`) and form
   `A` in torch, differentiably, from the transition the analysis derived (`Transition.linear`, the update's
   linear part `L(□)`): nothing for the identity class, an elementwise decay `a_t = L_t(1)` for scalar,
   diagonal and complex-diagonal classes, a matrix `A_t = L_t(I)` for Householder and DPLR classes (on
   the state's first dim, or its last when the transition multiplies from the right), multiplied over the
   slice in a balanced tree (log depth, batched).
2. one all-gather exchanges the elements; each rank folds the ones before it (the exclusive scan).
3. ranks r > 0 re-run their slice from the true entering state (the kernels take `initial_state` and
   return its gradient), which makes outputs exact for every readout, normalised and `prev(S)` ones too.
Backward runs the same graph in reverse: the all-gather's backward is one all-reduce that hands each rank
the gradient of its own `(A, b)`, so gradients reach every rank's inputs and params and rank 0's initial
state. Only standard collectives are used (all_gather, all_reduce), so `gloo` (CPU) and `nccl` both work.

Modules: `summary` (a slice as `(A, b)`), `exchange` (the collective), `context` (the wrapper).
"""

from .context import ContextParallel

__all__ = ["ContextParallel"]
