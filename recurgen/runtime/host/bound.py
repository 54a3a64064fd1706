"""bound: the names each generated module defines from its spec, which the host code reads as its globals.

templates/module.py.jinja and templates/chunk_mode.py.jinja define them in every module; this file is never
copied. Here they hold the values of a spec with no inputs, states or chunk form, so that the host modules import
and lint on their own; tests patch a spec's tables into a host module to run its helpers (tests/runtime).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# name, dims (per token for inputs, per head for params, per (batch, head) for states), complex
Table = tuple[tuple[str, tuple[str, ...], bool], ...]

SPEC_NAME: str = "<no spec>"
INPUTS: Table = ()
PARAMS: Table = ()
STATES: Table = ()
OUTPUTS: Table = ()
OPTIONS: tuple[tuple[str, Callable[[dict[str, int], int], float]], ...] = ()
ARG_ORDER: tuple[str, ...] = ()
FIXED_DIMS: dict[str, int] = {}
TILED_DIM: str | None = None
BWD_TILED_DIM: str | None = None
STATE_TILE_BUDGET: int = 16384
BWD_STATE_TILE_BUDGET: int = 8192
BWD_NUM_WARPS: int = 4
TWO_SWEEP: bool = False
_INPUT_NAMES: frozenset[str] = frozenset()
_DEFAULTS: dict[str, float] = {}
_HAS_HEADS: bool = True
_SWITCHES: dict[str, tuple[str, float]] = {}
# the chunk section's (templates/chunk_mode.py.jinja)
CHUNK_KERNELS: tuple[tuple[str, str, tuple[str, ...], tuple[object, ...]], ...] = ()
CHUNK_REASON: str | None = "no spec"
_CHUNK_NUM_WARPS: int = 4
_STATE_INDEX: dict[str, int] = {}
# per state: (name, its op, canonical argument names, transposed, vector, sub-steps)
_CHUNK_CALLS: tuple[tuple[str, Callable[..., list[torch.Tensor]], tuple[str, ...], bool, bool, int], ...] = ()
# per state, for the token op: (family, readout, forward launcher, backward launcher, kernels finish the output)
_CHUNK_FAMILIES: dict[str, tuple[str, str, Callable[..., tuple], Callable[..., tuple], bool]] = {}
# the token kernels' tables (templates/chunk_mode.py.jinja says what each holds)
TOKEN_BLOCK: int = 64
_TOKEN_DIMS: tuple[str, ...] = ()
_TOKEN_OPTIONS: tuple[str, ...] = ()
_TOKEN_LEAVES: tuple[tuple[str, str], ...] = ()
_TOKEN_OPERANDS: tuple[tuple[str, str, str, str, str, tuple[str, ...], bool], ...] = ()
_TOKEN_DIRECT: tuple[tuple[str, str, str, bool], ...] = ()
_TOKEN_BUFFERS: tuple[tuple[str, tuple[str, ...], bool], ...] = ()
_TOKEN_OUTPUTS: tuple[tuple[int, str, tuple[str, ...]], ...] = ()
_TOKEN_FOLDED: dict[int, str] = {}
_TOKEN_READS: tuple[str, ...] = ()
_TOKEN_GRADS: tuple[tuple[str, str], ...] = ()
_TOKEN_KERNELS: tuple[object | None, object | None, object | None, object | None] = (None, None, None, None)
# a spec's functions: the fused recurrent launchers, the torch step and the backward op. None here: the host
# code calls them only where a generated module has defined them
_fwd_launcher: Callable[..., tuple[dict, dict | None, dict]] | None = None
_bwd_launcher: Callable[..., tuple[dict, dict, dict]] | None = None
_torch_step: Callable[..., tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None
_bwd_op: Callable[..., list[torch.Tensor]] | None = None
# the ops section's and the chunk section's helpers
_OP: str = "no_spec"
# the token op of the chunk section (registered by templates/chunk_mode.py.jinja from host/chunk_token.py)
_token_fwd_op: Callable[..., list[torch.Tensor]] | None = None
_token_bwd_op: Callable[..., list[torch.Tensor]] | None = None
_running_max_bwd_op: Callable[..., list[torch.Tensor]] | None = None
_chunk_fake_outputs: Callable[..., list[torch.Tensor]] | None = None
_chunk_seqlens: Callable[..., torch.Tensor | None] | None = None
_chunk_scales: Callable[..., dict[str, float]] | None = None
_chunk_s0: Callable[..., torch.Tensor] | None = None
_chunk_final: Callable[..., torch.Tensor] | None = None
