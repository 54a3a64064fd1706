"""The checker's part for the `api` line: the public call's names, renames, optional tensors and clashes."""

from __future__ import annotations

from collections import Counter

from .. import ir
from .. import syntax as S
from .language import _LANGUAGE_NAMES, FUNCTIONS, IDENT, reserved_reason


class ApiChecks:
    """Mixed into the checker (`recurgen.check._Checker`): uses its scope, reporter and declarations."""

    def _check_api(self) -> ir.Api:
        """The api line's arguments: each names a tensor, option or call argument once, maybe renamed."""
        if self.api is None:
            return ir.Api()
        tensors = [t.name for t in (*self.inputs, *self.params)]
        options = [o.name for o in self.options]
        targets = [*tensors, *options, *ir.CALL_ARGS]
        args: list[ir.ApiArg] = []
        publics: dict[str, S.Ident] = {}
        for a in self.api.args:
            if a.target.name not in targets:
                if a.target.name not in self.failed:
                    self.r.error(a.target.span, f"`{a.target.name}` in the api line is not an input, param, "
                                 "option or call argument", self._suggest(a.target.name, targets,
                                                                          f"the arguments are: {', '.join(targets)}"))
                continue
            if a.public is not a.target and not self._public_name(a):
                continue
            first = publics.get(a.public.name)
            if first is not None:
                self.r.error(a.public.span, f"the public call would have two arguments named `{a.public.name}` "
                             f"(the first at column {first.span.col})", "give each argument its own name")
                continue
            publics[a.public.name] = a.public
            args.append(ir.ApiArg(a.public.name, a.target.name))
        self._api_coverage(tensors)
        api = ir.Api(self.api.name.name, tuple(args))
        self._api_clashes(api, publics, [*tensors, *options])
        return api

    def _public_name(self, a: S.ApiArg) -> bool:
        """A library's name for an argument must be a Python identifier the generated code does not use."""
        name = a.public.name
        if not IDENT.match(name):
            self.r.error(a.public.span, f"`{name}` cannot name an argument of the public call",
                         "use an ASCII identifier of at most 40 characters")
            return False
        # a public name never appears in an expression: the language's own words (`normalize`, fla's option) are
        # fine; what clashes is Python's and the generated code's
        reason = None if name in FUNCTIONS or name in _LANGUAGE_NAMES else reserved_reason(name)
        if reason is not None:
            self.r.error(a.public.span, f"`{name}` is reserved ({reason}) and cannot rename `{a.target.name}`",
                         "the public call's arguments are Python names next to the generated code's own; "
                         f"keep `{a.target.name}` or choose another name")
            return False
        return True

    def _api_coverage(self, tensors: list[str]) -> None:
        assert self.api is not None
        names = Counter(a.target.name for a in self.api.args)
        missing = [t for t in tensors if t not in names]
        dup = {n for n, c in names.items() if c > 1}
        if missing or dup:
            self.r.error(self.api.span, "the api line must list every input and param exactly once, and any "
                         "other argument at most once" + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; repeated: {', '.join(sorted(dup))}" if dup else ""),
                         "list each of them once, in the order of the public call")

    def _api_clashes(self, api: ir.Api, publics: dict[str, S.Ident], names: list[str]) -> None:
        """A new name must not be one that another argument keeps (`api f(q, k, v, scale = g)`)."""
        renamed = {a.target for a in api.args if a.public != a.target}
        for n in names:
            if n in renamed or n not in publics:
                continue
            owner = next(a for a in api.args if a.public == n)
            if owner.target != n:
                self.r.error(publics[n].span, f"`{n}` cannot rename `{owner.target}`: the spec's `{n}` keeps "
                             "that name in the public call", f"rename `{n}` too, or choose another name")

    def _check_optional(self) -> None:
        """Optional tensors: their dims readable without them, and no required argument after them."""
        tensors = {t.name: t for t in (*self.inputs, *self.params)}
        required_dims = {d for t in tensors.values() if t.default is None for d in t.ty.dims}
        for t in tensors.values():
            unread = [d for d in t.ty.dims if t.default is not None and d not in required_dims
                      and self.dims[d].size is None]
            if unread:
                self.r.error(t.span, f"the dimension `{unread[0]}` of optional `{t.name}` appears in no required "
                             f"input or param, so its size is unknown when `{t.name}` is omitted",
                             f"make `{t.name}` required, or fix the size: `dim {unread[0]} = 16`")
        if self.api is not None:
            order = [(a.target.name, a.span) for a in self.api.args]
        else:
            order = [(t.name, t.span) for t in tensors.values()]
        optional: str | None = None
        scalar: str | None = None  # the first option or call argument listed
        for name, span in order:
            if name in tensors and scalar is not None:
                self.r.error(span, f"the tensor `{name}` comes after `{scalar}`, which is not a tensor",
                             "list the inputs and params first: recurgen's tools pass the tensors by position "
                             f"(`{scalar}` is still accepted by name)")
                return
            if name in tensors and tensors[name].default is None:
                if optional is not None:
                    self.r.error(span, f"the required argument `{name}` comes after the optional `{optional}`",
                                 "a call fills arguments in order: move the required ones first, or make this "
                                 "one optional with a default (`= 0`)")
                    return
            elif name in tensors:
                optional = optional or name
            else:
                scalar = scalar or name
