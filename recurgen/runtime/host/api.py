"""api: the public call's argument handling (section `api`): renamed arguments, the head axis of `layout [B, T]`,
switches, omitted optional tensors.

Copied into every generated module (see the package's docstring).
"""

from __future__ import annotations

import torch

from .bound import _DEFAULTS, _HAS_HEADS, _INPUT_NAMES, _SWITCHES, FIXED_DIMS, INPUTS, PARAMS, SPEC_NAME


#: section api
def _merge(name, value, lib_name, lib_value):
    """A call argument the spec's api line renames: given under the library's name or recurgen's, not both."""
    if lib_value is None or lib_value is False:
        return value
    if value is not None and value is not False:
        raise TypeError(f"{SPEC_NAME}: `{lib_name}` and `{name}` are the same argument; give one of them")
    return lib_value


def _add_heads(values, states, lead):
    """`layout [B, T]`: a call without a head axis gets one of size 1 (at `lead`: 2 in a call, 1 in a step).

    Tensors that have a head axis pass unchanged: recurgen's own tools call every spec head-wise.
    """
    first = next(((n, dims) for n, dims, _ in INPUTS if isinstance(values[n], torch.Tensor)), None)
    if _HAS_HEADS or first is None or values[first[0]].dim() != lead + len(first[1]):
        return values, states, False
    values = {n: x.unsqueeze(lead if n in _INPUT_NAMES else 0) if isinstance(x, torch.Tensor) else x
              for n, x in values.items()}
    if states is not None:
        states = states.unsqueeze(1) if isinstance(states, torch.Tensor) else tuple(s.unsqueeze(1) for s in states)
    return values, states, True



def _check_switches(opts):
    """A call that turns a switch the other way needs the spec's other variant: another module."""
    for name, (public, value) in _SWITCHES.items():
        if float(bool(opts[name])) != value:
            raise ValueError(f"{SPEC_NAME}: this module is compiled for {public}={bool(value)}; recurgen.load(...) "
                             "compiles and calls the variant a call asks for")


def _fill_defaults(values):
    """Omitted optional tensors as their default value, shaped like the given ones ([B, T, H, ...] layout)."""
    absent = [n for n in _DEFAULTS if values[n] is None]
    x0 = next((values[n] for n, _, _ in INPUTS if isinstance(values[n], torch.Tensor)), None)
    if not absent or x0 is None or x0.dim() < 3:
        return values  # nothing to fill, or no input to read B and T from (_sizes says so)
    sz, H = dict(FIXED_DIMS), 1
    for table, lead in ((INPUTS, 3), (PARAMS, 1)):
        for n, dims, _ in table:
            x = values[n]
            if isinstance(x, torch.Tensor) and x.dim() == lead + len(dims):
                H = max(H, int(x.shape[lead - 1]))
                for d, s in zip(dims, x.shape[lead:], strict=True):
                    sz.setdefault(d, int(s))
    out = dict(values)
    for table, lead in ((INPUTS, tuple(x0.shape[:2])), (PARAMS, ())):
        for n, dims, _ in table:
            if n in absent:
                shape = (*lead, H, *(sz.get(d, 1) for d in dims))
                out[n] = torch.full(shape, _DEFAULTS[n], dtype=x0.dtype, device=x0.device)
    return out
