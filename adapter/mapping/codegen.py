"""Value specs -> Python source -> one function per top-level spec, compiled once at load.

Nested structure (objects, lists, alternatives, conditions, constants, joins) becomes straight-line
code instead of a tree of small closures: about half the per-message cost of interpreting the specs.
The generated code only *calls* what the compiler resolved and checked (path readers, transforms,
code-table lookups, object files), passed in by name; text from a mapping file (constants, element
names, messages) only ever enters the source through ``repr``.  ``fn.__source__`` holds the generated
text, for debugging a mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from adapter.errors import MappingError
from adapter.mapping import schema as S
from adapter.mapping.ids import resource_id
from adapter.mapping.paths import PathError, each_reader, item_reader, location_reader, reader
from adapter.mapping.runtime import MISSING

if TYPE_CHECKING:
    from adapter.mapping.compiler import _Compiler

__all__ = ["generate", "generate_fields", "norm"]


def norm(v: Any) -> str:
    """How conditions compare values: trimmed, case-folded text; absent is ''."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).strip().casefold()


def _plain_const(spec: Any) -> bool:
    return isinstance(spec, S.ConstSpec) and spec.when is None and spec.unless is None and spec.const is not None


def _text(v: Any) -> str:
    return "" if v is None else v if type(v) is str else str(v)


class _Gen:
    def __init__(self, c: _Compiler) -> None:
        self.c = c
        self.ns: dict[str, Any] = {"MappingError": MappingError, "_norm": norm, "_text": _text,
                                   "_resource_id": resource_id, "MISSING": MISSING}
        self.lines: list[str] = []
        self.n = 0

    def ref(self, obj: Any, prefix: str = "k") -> str:
        self.n += 1
        name = f"_{prefix}{self.n}"
        self.ns[name] = obj
        return name

    def tmp(self, prefix: str = "v") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def put(self, ind: int, line: str) -> None:
        self.lines.append("    " * ind + line)

    # --- conditions ---------------------------------------------------------------------------------

    def cond(self, spec: Any, sc: str) -> str | None:
        parts = []
        for atoms, negate in ((self.c.atoms(getattr(spec, "when", None)), False),
                              (self.c.atoms(getattr(spec, "unless", None)), True)):
            exprs = [self.atom(a, sc) for a in atoms]
            if not exprs:
                continue
            joined = " and ".join(exprs)
            parts.append(f"not ({joined})" if negate else (f"({joined})" if len(exprs) > 1 else joined))
        return " and ".join(parts) if parts else None

    def atom(self, atom: tuple[str, Any, Any], sc: str) -> str:
        kind, r, target = atom
        read = self.read_expr(r, sc)
        if kind == "present":
            return f"{read} is not None"
        if kind == "absent":
            return f"{read} is None"
        if kind == "same":
            return f"_norm({read}) == _norm({self.read_expr(target, sc)})"
        w = self.tmp("w")
        return f"(_norm({w}) if type({w} := {read}) is not str else {w}.strip().casefold()) in {self.ref(target, 'c')}"

    def read_expr(self, r: Any, sc: str) -> str:
        """An expression reading a path: a variable or the context inline, anything else a reader call."""
        ref = getattr(r, "ref", None)
        if ref is not None and ref.kind == "var" and ref.name != "id" and not ref.key:
            fr = f"{sc}.frame"
            return (f"({fr}.vars[{ref.name!r}] if {ref.name!r} in {fr}.vars "
                    f"else {self.ref(r, 'r')}({sc}))")
        if ref is not None and ref.kind == "ctx" and ref.name == "source":
            return f"{sc}.run.source"
        return f"{self.ref(r, 'r')}({sc})"

    # --- specs --------------------------------------------------------------------------------------

    def emit(self, spec: Any, t: str, ind: int, sc: str) -> None:
        """Lines that set local ``t`` to the spec's value (None: absent), reading scope variable ``sc``."""
        if isinstance(spec, list):
            self.alternatives(spec, t, ind, sc)
            return
        cond = self.cond(spec, sc)
        if cond is None:
            self.body(spec, t, ind, sc)
            return
        self.put(ind, f"if {cond}:")
        self.body(spec, t, ind + 1, sc)
        self.put(ind, "else:")
        self.put(ind + 1, f"{t} = None")

    def alternatives(self, specs: list[Any], t: str, ind: int, sc: str) -> None:
        if not specs:
            self.put(ind, f"{t} = None")
            return
        self.emit(specs[0], t, ind, sc)
        for spec in specs[1:]:
            self.put(ind, f"if {t} is None:")
            ind += 1
            self.emit(spec, t, ind, sc)

    def body(self, spec: Any, t: str, ind: int, sc: str) -> None:
        getattr(self, "_" + type(spec).__name__)(spec, t, ind, sc)

    def _ConstSpec(self, spec: S.ConstSpec, t: str, ind: int, sc: str) -> None:
        self.put(ind, f"{t} = {self.const(spec)}")

    def const(self, spec: S.ConstSpec) -> str:
        """A constant as a Python literal: evaluating it makes a fresh object each time."""
        from adapter.mapping.compiler import _plain

        return repr(_plain(spec.const, self.c.f, spec))

    def _ObjectSpec(self, spec: S.ObjectSpec, t: str, ind: int, sc: str) -> None:
        self.object(spec.fields, spec.needs, spec.needs_any, spec, t, ind, sc)

    def object(self, fields: dict[str, Any], needs: list[str], needs_any: list[str], node: Any, t: str, ind: int,
               sc: str) -> None:
        for k in [*needs, *needs_any]:
            if k not in fields:
                raise self.c.error(node, f"needs names {k!r}, which is not one of its fields")
        o, v = self.tmp("o"), self.tmp()
        self.put(ind, f"{o} = {{}}")
        for key, sub in fields.items():
            if _plain_const(sub):  # a constant element: no test needed
                self.put(ind, f"{o}[{str(key)!r}] = {self.const(sub)}")
                continue
            self.emit(sub, v, ind, sc)
            self.put(ind, f"if {v} is not None:")
            self.put(ind + 1, f"{o}[{str(key)!r}] = {v}")
        checks = [f"{str(k)!r} in {o}" for k in needs]
        if needs_any:
            checks.append("(" + " or ".join(f"{str(k)!r} in {o}" for k in needs_any) + ")")
        test = " and ".join([o, *checks])
        self.put(ind, f"{t} = {o} if {test} else None")

    def _ItemsSpec(self, spec: S.ItemsSpec, t: str, ind: int, sc: str) -> None:
        out, v = self.tmp("l"), self.tmp()
        self.put(ind, f"{out} = []")
        for sub in spec.items:
            self.emit(sub, v, ind, sc)
            self.put(ind, f"if {v} is not None:")
            if spec.unique:
                x = self.tmp("x")
                self.put(ind + 1, f"for {x} in ({v} if type({v}) is list else ({v},)):")
                self.put(ind + 2, f"if {x} not in {out}:")
                self.put(ind + 3, f"{out}.append({x})")
            else:
                self.put(ind + 1, f"if type({v}) is list:")
                self.put(ind + 2, f"{out}.extend({v})")
                self.put(ind + 1, "else:")
                self.put(ind + 2, f"{out}.append({v})")
        self.put(ind, f"{t} = {out} or None")

    def _JoinSpec(self, spec: S.JoinSpec, t: str, ind: int, sc: str) -> None:
        parts, v, any_ = self.tmp("p"), self.tmp(), self.tmp("a")
        self.put(ind, f"{parts} = []")
        self.put(ind, f"{any_} = False")
        for sub in spec.join:
            if isinstance(sub, S.ConstSpec) and sub.when is None and sub.unless is None \
                    and isinstance(sub.const, (str, int, float)) and not isinstance(sub.const, bool):
                self.put(ind, f"{parts}.append({str(sub.const)!r})")
                self.put(ind, f"{any_} = True")
                continue
            self.emit(sub, v, ind, sc)
            self.put(ind, f"if {v} is None:")
            self.put(ind + 1, f"{parts}.append('')" if spec.empty == "keep" else "pass")
            self.put(ind, "else:")
            self.put(ind + 1, f"{parts}.append({v} if type({v}) is str else str({v}))")
            self.put(ind + 1, f"{any_} = True")
        self.put(ind, f"{t} = {spec.sep!r}.join({parts}) if {any_} else None")

    def _RefSpec(self, spec: S.RefSpec, t: str, ind: int, sc: str) -> None:
        self.c.setc.refs.append((self.c.f, spec, spec.ref))
        r = self.tmp("r")
        self.put(ind, f"{r} = {sc}.named.get({spec.ref!r})")
        self.put(ind, f"{t} = None if {r} is None else {{'reference': {r}['resourceType'] + '/' + {r}['id']}}")

    def _IdOfSpec(self, spec: S.IdOfSpec, t: str, ind: int, sc: str) -> None:
        names = []
        for sub in spec.key:
            v = self.tmp()
            self.emit(sub, v, ind, sc)
            names.append(f"_text({v})")
        self.put(ind, f"{t} = _resource_id({sc}.run.source, {spec.id_of!r}, {', '.join(names)})")

    def _ReferencesSpec(self, spec: S.ReferencesSpec, t: str, ind: int, sc: str) -> None:
        self.put(ind, f"{t} = [{{'reference': r['resourceType'] + '/' + r['id']}} for r in {sc}.run.produced()] "
                      "or None")

    def _FailSpec(self, spec: S.FailSpec, t: str, ind: int, sc: str) -> None:
        self.put(ind, f"raise MappingError({spec.fail!r}, code={spec.code!r}, location={spec.location!r})")

    # --- from / each: read, then use -> transform -> lookup -----------------------------------------

    def _FromSpec(self, spec: S.FromSpec, t: str, ind: int, sc: str) -> None:
        c = self.c
        if isinstance(spec.from_, dict):
            if spec.use:
                raise c.error(spec, "`use:` needs a single source path, not named inputs")
            keys = []
            for k, sub in spec.from_.items():
                v = self.tmp()
                self.emit(sub, v, ind, sc)
                keys.append((str(k), v))
            values = ", ".join(f"{k!r}: {v}" for k, v in keys)
            present = " or ".join(f"{v} is not None" for _, v in keys)
            self.put(ind, f"{t} = {{{values}}} if {present} else None")
            loc: Callable[..., Any] = lambda s, at=spec.location: at  # noqa: E731
            inputs: tuple[str, ...] | None = tuple(sorted(k for k, _ in keys))
        else:
            ref = c.path(spec.from_, spec)
            if spec.use:
                try:
                    read = item_reader(ref)
                except PathError as exc:
                    raise c.error(spec, f"bad source path: {exc}") from None
            else:
                read = reader(ref)
            if ref.kind == "var" and ref.name != "id" and not spec.use:
                self.var(ref.name, ref.key, t, ind, sc)  # inlined: variables are read often
            elif ref.kind == "ctx" and ref.name == "source":
                self.put(ind, f"{t} = {sc}.run.source")
            elif ref.kind == "res" and not spec.use:
                r = self.tmp("r")
                self.put(ind, f"{r} = {sc}.named.get({ref.name!r})")
                self.put(ind, f"{t} = None if {r} is None else {r}.get({ref.key or 'id'!r})")
            else:
                self.put(ind, f"{t} = {self.ref(read, 'r')}({sc})")
            loc = location_reader(ref, spec.location)
            inputs = None
        if spec.required:
            message = spec.required if isinstance(spec.required, str) else "required element missing"
            self.put(ind, f"if {t} is None:")
            self.put(ind + 1, f"raise MappingError({message!r}, code='missing-field', location={self.ref(loc, 'l')}({sc}))")
        if spec.use:
            self.put(ind, f"if {t} is not None:")
            self.put(ind + 1, f"{t} = {self.ref(c.use(spec), 'u')}({sc}, {t})")
        self.pipeline(spec, t, ind, sc, loc, inputs)

    def var(self, name: str, key: str, t: str, ind: int, sc: str) -> None:
        fr = self.tmp("fr")
        self.put(ind, f"{fr} = {sc}.frame")
        self.put(ind, f"{t} = {fr}.vars.get({name!r}, MISSING)")
        self.put(ind, f"if {t} is MISSING:")
        self.put(ind + 1, f"{t} = {fr}.vars[{name!r}] = {fr}.fns[{name!r}]({fr}.base)")
        if key:
            self.put(ind, f"{t} = {t}.get({key!r}) if type({t}) is dict else None")

    def pipeline(self, spec: Any, t: str, ind: int, sc: str, loc: Callable[..., Any],
                 inputs: tuple[str, ...] | None) -> None:
        """transform chain then lookup, on ``t`` when it has a value."""
        chain = self.c.transforms(spec, inputs)
        lookup = self.c.lookup(spec, loc) if spec.lookup else None
        if not chain and lookup is None:
            return
        self.put(ind, f"if {t} is not None:")
        if chain:
            self.put(ind + 1, "try:")
            for i, fn in enumerate(chain):
                call = f"{t} = {self.ref(fn, 't')}({t}, {sc}.run)"
                if i == 0:
                    self.put(ind + 2, call)
                else:
                    self.put(ind + 2 + i - 1, f"if {t} is not None:")
                    self.put(ind + 2 + i, call)
            self.put(ind + 1, "except MappingError as exc:")
            self.put(ind + 2, "if exc.location is None:")
            self.put(ind + 3, f"exc.location = {self.ref(loc, 'l')}({sc})")
            self.put(ind + 2, "raise")
        if lookup is not None:
            self.put(ind + 1, f"if {t} is not None:")
            self.put(ind + 2, f"{t} = {self.ref(lookup, 'q')}({sc}, {t})")

    def _EachSpec(self, spec: S.EachSpec, t: str, ind: int, sc: str) -> None:
        c = self.c
        ref = c.path(spec.each, spec)
        try:
            items, segments = each_reader(ref)
        except PathError as exc:
            raise c.error(spec, f"bad source path: {exc}") from None
        if spec.use and spec.map is not None:
            raise c.error(spec, "`each:` takes `use:` or `map:`, not both")
        if segments and spec.use is None and spec.map is None:
            raise c.error(spec, f"`each: {ref.text}` iterates segments: give `map:` or `use:`")
        out, it, v, si = self.tmp("l"), self.tmp("it"), self.tmp(), self.tmp("s")
        loc = (lambda s, at=spec.location: at) if spec.location else (lambda s: getattr(s.item, "location", None))
        needs_scope = spec.map is not None or bool(spec.transform) or bool(spec.lookup)
        self.put(ind, f"{out} = []" if not spec.first else f"{t} = None")
        self.put(ind, f"for {it} in {self.ref(items, 'e')}({sc}):")
        body = ind + 1
        if needs_scope:
            self.put(body, f"{si} = {sc}.with_item(None, {it})" if segments else f"{si} = {sc}.with_item({it})")
        if spec.use:
            self.put(body, f"{v} = {self.ref(c.use(spec), 'u')}({sc}, {it})")
        elif spec.map is not None:
            self.emit(spec.map, v, body, si)
        else:
            self.put(body, f"{v} = {it}.value()")
        self.pipeline(spec, v, body, si if needs_scope else sc, loc, None)
        self.put(body, f"if {v} is None:")
        self.put(body + 1, "continue")
        if spec.first:
            self.put(body, f"{t} = {v}")
            self.put(body, "break")
            return
        if spec.unique:
            self.put(body, f"if {v} not in {out}:")
            self.put(body + 1, f"{out}.append({v})")
        else:
            self.put(body, f"{out}.append({v})")
        self.put(ind, f"{t} = {out} or None")


def generate_fields(c: _Compiler, fields: dict[str, Any], node: Any) -> Callable[[Any, dict[str, Any]], None]:
    """One function ``fn(scope, out)`` that sets every element of a resource that has a value, in order."""
    g = _Gen(c)
    for key, sub in fields.items():
        if _plain_const(sub):
            g.put(1, f"out[{str(key)!r}] = {g.const(sub)}")
            continue
        g.emit(sub, "v", 1, "s")
        g.put(1, "if v is not None:")
        g.put(2, f"out[{str(key)!r}] = v")
    source = "def _fn(s, out):\n" + "\n".join(g.lines or ["    pass"]) + "\n"
    code = compile(source, f"<{c.f.name}:{getattr(node, 'line', 0)} fields>", "exec")
    exec(code, g.ns)  # noqa: S102 - our own generated source, built from checked models
    fn = g.ns["_fn"]
    fn.__source__ = source
    return fn  # type: ignore[no-any-return]


def generate(c: _Compiler, spec: Any, *, fields: tuple[dict[str, Any], list[str], list[str]] | None = None,
             label: str = "spec") -> Callable[[Any], Any]:
    """One function ``fn(scope) -> value | None`` for a spec (or for an object's fields)."""
    g = _Gen(c)
    if fields is not None:
        g.object(fields[0], fields[1], fields[2], spec, "x", 1, "s")
    else:
        g.emit(spec, "x", 1, "s")
    source = "def _fn(s):\n" + "\n".join(g.lines) + "\n    return x\n"
    code = compile(source, f"<{c.f.name}:{getattr(spec, 'line', 0)} {label}>", "exec")
    exec(code, g.ns)  # noqa: S102 - our own generated source, built from checked models
    fn = g.ns["_fn"]
    fn.__source__ = source
    return fn  # type: ignore[no-any-return]
