"""Load mappings/ (and a site overlay) once, at start-up: YAML with line numbers -> validated models ->
compiled MappingSet.  Anything wrong stops start-up with a ConfigError naming the file and line.

Overlay: a file in the site directory with the same relative path as a shipped one replaces it
(``codes/v2_0063_relationship.yaml``, ``hl7v2/resources/flag.yaml``); new files are added.  So a site
changes one file, never the package.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from adapter.errors import ConfigError
from adapter.mapping.codes import DEFAULT_MAPPINGS_DIR
from adapter.mapping.schema import (
    CodeTableFile,
    FeedFile,
    MessageFile,
    ObjectFile,
    ResourceFile,
    SourceFile,
    Stu3DiffFile,
)

if TYPE_CHECKING:
    from adapter.mapping.compiler import MappingSet

__all__ = ["load_mappings", "read_yaml", "classify", "LineDict", "LineList", "LineStr"]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineStr(str):
    line = 0


class LineDict(dict):  # type: ignore[type-arg]
    line = 0
    key_lines: dict[Any, int]


class LineList(list):  # type: ignore[type-arg]
    line = 0


def read_yaml(path: Path) -> Any:
    """Parse one YAML file keeping the line of every mapping, sequence and string (for error messages)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({type(exc).__name__})", location=str(path)) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return _convert(node, loader, path) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{where}: {problem}", location=where) from None
    finally:
        loader.dispose()


def _convert(node: yaml.Node, loader: Any, path: Path) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = LineDict()
        out.line, out.key_lines = line, {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ConfigError(f"{path}:{key_node.start_mark.line + 1}: YAML merge keys (<<) are not supported",
                                  location=f"{path}:{key_node.start_mark.line + 1}")
            key = _scalar(key_node, loader) if isinstance(key_node, yaml.ScalarNode) else loader.construct_object(key_node)
            if isinstance(key, bool):
                where = f"{path}:{key_node.start_mark.line + 1}"
                raise ConfigError(f"{where}: key {key_node.value!r} is read as a YAML boolean: quote it",
                                  location=where)
            if isinstance(key, (dict, list)) or key in out:
                where = f"{path}:{key_node.start_mark.line + 1}"
                raise ConfigError(f"{where}: key {str(key)!r} appears twice", location=where)
            out[key] = _convert(value_node, loader, path)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = LineList(_convert(n, loader, path) for n in node.value)
        seq.line = line
        return seq
    return _scalar(node, loader)


def _scalar(node: yaml.Node, loader: Any) -> Any:
    if not node.style and node.value.startswith(".") and node.tag.endswith(":float"):
        value: Any = node.value  # `.1` is a relative source path here, not the number 0.1
    else:
        value = loader.construct_object(node)
    if isinstance(value, str):
        s = LineStr(value)
        s.line = node.start_mark.line + 1
        return s
    return value


# --- which model a file is, by where it sits ----------------------------------------------------------

_SOURCES = ("hl7v2", "csv", "json")
_KINDS: dict[str, tuple[str, type]] = {
    "messages": ("message", MessageFile), "feeds": ("feed", FeedFile), "resources": ("resource", ResourceFile),
    "datatypes": ("object", ObjectFile), "secondary": ("object", ObjectFile),
}


def classify(name: str) -> tuple[str, str, type] | None:
    """``hl7v2/resources/patient.yaml`` -> (kind, source, model), or None if not a mapping file location."""
    parts = name.split("/")
    if len(parts) == 2 and parts[0] == "codes":
        return "codes", "codes", CodeTableFile
    if len(parts) == 2 and parts[0] == "stu3":
        return "stu3", "stu3", Stu3DiffFile
    if len(parts) == 3 and parts[0] in _SOURCES and parts[1] in _KINDS:
        kind, model = _KINDS[parts[1]]
        if kind == "message" and parts[0] != "hl7v2" or kind == "feed" and parts[0] == "hl7v2":
            return None
        return kind, parts[0], model
    return None


def _line_of(data: Any, loc: tuple[Any, ...]) -> int:
    """The line of the deepest node of ``data`` that ``loc`` (a pydantic error location) reaches."""
    line = getattr(data, "line", 0)
    for step in loc:
        if isinstance(data, dict) and step in data:
            line = getattr(data, "key_lines", {}).get(step, line)
            data = data[step]
        elif isinstance(data, list) and isinstance(step, int) and step < len(data):
            data = data[step]
            line = getattr(data, "line", line)
        else:
            continue  # a union tag such as '<from>'
        line = getattr(data, "line", 0) or line
    return line


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and p.startswith("<")))
    if error["type"] == "extra_forbidden":
        return f"unknown key {str(error['loc'][-1])!r}" + (f" (in {loc.rsplit('.', 1)[0]})" if "." in loc else "")
    if error["type"] == "missing":
        return f"missing key {str(error['loc'][-1])!r}" + (f" (in {loc.rsplit('.', 1)[0]})" if "." in loc else "")
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _validate(name: str, path: Path, origin: str, data: Any) -> SourceFile:
    found = classify(name)
    if found is None:
        raise ConfigError(f"{path}: not a mapping file location (codes/, stu3/, or hl7v2|csv|json/"
                          "messages|feeds|resources|datatypes|secondary/)", location=str(path))
    kind, source, model = found
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a mapping file is a YAML mapping", location=f"{path}:1")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = max(errors, key=lambda e: (e["type"] == "extra_forbidden", len(e["loc"])))  # the most specific
        line = _line_of(data, first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}:{line}: {_describe(first)}{more}", location=f"{path}:{line}") from None
    return SourceFile(name, path, origin, kind, source, parsed)  # type: ignore[arg-type]


def _listing(shipped: Path, overlay: Path | None) -> dict[str, tuple[Path, str]]:
    files: dict[str, tuple[Path, str]] = {}
    for base, origin in ((shipped, "shipped"), (overlay, "site")):
        if base is None:
            continue
        if not base.is_dir():
            raise ConfigError(f"{base}: mapping directory does not exist", location=str(base))
        for path in sorted(base.rglob("*")):
            if path.is_dir() or path.suffix in (".md", ".txt") or path.name.startswith("."):
                continue
            rel = path.relative_to(base).as_posix()
            if rel.startswith("rules/"):  # the safeguarding rules' declarations (adapter.rules), not mappings
                continue
            if path.suffix != ".yaml":
                raise ConfigError(f"{path}: mapping files end in .yaml", location=str(path))
            files[rel] = (path, origin)
    return files


_cache: dict[tuple[Any, ...], MappingSet] = {}
_lock = threading.Lock()


def load_mappings(shipped: Path = DEFAULT_MAPPINGS_DIR, overlay: Path | None = None) -> MappingSet:
    """Every mapping file, validated and compiled: a MappingSet (call once at start-up).

    Raises ConfigError naming file and line for a bad file, an unknown key, transform, code table,
    include, mapping file or a bad source path.  Loading the same unchanged directories again returns
    the same (immutable) MappingSet."""
    from adapter.mapping.compiler import compile_set

    listing = _listing(shipped, overlay)
    signature = (str(shipped.resolve()), str(overlay.resolve()) if overlay else None,
                 tuple((rel, origin, p.stat().st_mtime_ns, p.stat().st_size) for rel, (p, origin) in listing.items()))
    with _lock:
        cached = _cache.get(signature)
        if cached is not None:
            return cached
    files = {rel: _validate(rel, path, origin, read_yaml(path)) for rel, (path, origin) in listing.items()}
    mset = compile_set(files)
    with _lock:
        if len(_cache) > 16:
            _cache.clear()
        _cache[signature] = mset
    return mset
