"""The rules file as text: YAML 1.2 read with line numbers, errors located and explained.

:func:`load_yaml` reads YAML 1.2 (ruamel.yaml's safe schema: ``21:00`` is a string,
``yes`` is a string, ``0o17`` is octal) into plain Python values, and records the
line of every key and list item, so that an error on ``triggers.cart_abandonment
.stages[1]`` can say ``rules.yaml:4``. It refuses, with the line: duplicate keys,
keys that are not scalars, strings with lone surrogates, recursive aliases and
tags outside the safe schema. Shared aliases are built once (no "billion laughs").

:func:`locate` finds the line of a key path (or of its nearest ancestor present
in the file); :func:`suggest` proposes the closest known key for a misspelt one.
"""

from __future__ import annotations

import difflib
import io
import pathlib
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]  # mapping keys as str, list indices as int
#: Every key of the rules file with its default, commented: shipped in the package (the
#: repository's rules.example.yaml), so that errors can point at it wherever Nudge runs.
EXAMPLE_FILE = pathlib.Path(__file__).with_name("rules.example.yaml")
MAP = "tag:yaml.org,2002:map"
SEQ = "tag:yaml.org,2002:seq"


class YamlProblem(ValueError):
    """The text is not usable YAML; ``line`` and ``column`` (1-based) when they are known."""

    def __init__(self, message: str, line: int | None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def _reader() -> YAML:
    return YAML(typ="safe", pure=True)


def load_yaml(text: str) -> tuple[Any, dict[Path, int]]:
    """Plain Python data (dict, list, str, int, float, bool, None) and the line of each path.

    Raises :class:`YamlProblem`; RecursionError and ValueError (e.g. an integer of more
    than 4300 digits) pass through for the caller to report."""
    yaml = _reader()
    try:
        root = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise YamlProblem(f"not valid YAML: {exc.problem or exc}", line, column) from None
    lines: dict[Path, int] = {}
    if root is None:
        return None, lines
    return _Builder(yaml, lines).build(root, ()), lines


class _Builder:
    def __init__(self, yaml: YAML, lines: dict[Path, int]) -> None:
        self.constructor = yaml.constructor
        self.lines = lines
        self.built: dict[int, Any] = {}  # id(node) -> value, for aliased nodes
        self.open: set[int] = set()  # nodes being built (a recursive alias meets one)

    def build(self, node: Node, path: Path) -> Any:
        key = id(node)
        if key in self.built:
            return self.built[key]
        if key in self.open:
            raise YamlProblem("a recursive alias (an anchor used inside itself)", _line(node))
        self.open.add(key)
        if isinstance(node, MappingNode):
            value: Any = self._mapping(node, path)
        elif isinstance(node, SequenceNode):
            if node.tag != SEQ:
                raise YamlProblem(f"unsupported tag {node.tag}", _line(node))
            value = [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            for i, item in enumerate(node.value):
                self.lines.setdefault((*path, i), _line(item))
        else:
            value = self._scalar(node)
        self.open.discard(key)
        self.built[key] = value
        return value

    def _mapping(self, node: MappingNode, path: Path) -> dict[Any, Any]:
        if node.tag != MAP:
            raise YamlProblem(f"unsupported tag {node.tag}", _line(node))
        self.constructor.flatten_mapping(node)  # merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                message = "a key must be a scalar, not a list or a mapping"
                raise YamlProblem(message, _line(key_node))
            key = self._scalar(key_node)
            if key in result:
                raise YamlProblem(f"duplicate key {key!r}", _line(key_node))
            child = (*path, str(key))
            self.lines[child] = _line(key_node)
            result[key] = self.build(value_node, child)
        return result

    def _scalar(self, node: Node) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except MarkedYAMLError as exc:
            raise YamlProblem(f"not valid YAML: {exc.problem or exc}", _line(node)) from None
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise YamlProblem(
                    "a string holds a lone surrogate (not Unicode text)", _line(node)
                ) from None
        return value


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def dump_yaml(data: Any) -> str:
    """Block-style YAML 1.2 that :func:`load_yaml` reads back to ``data``."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.allow_unicode = True
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def locate(lines: dict[Path, int], loc: tuple[str | int, ...]) -> int | None:
    """The line of ``loc`` (pydantic's error location), or of its nearest ancestor in the file."""
    path = tuple(part if isinstance(part, int) else str(part) for part in loc)
    while path:
        line = lines.get(path)
        if line is None and isinstance(path[-1], int):  # an integer mapping key, not an index
            line = lines.get((*path[:-1], str(path[-1])))
        if line is not None:
            return line
        path = path[:-1]
    return None


def suggest(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """For an unknown key at ``loc``: `` (did you mean `x`?)`` or the known keys, or ""."""
    known = known_keys(model, loc[:-1])
    if not known:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean `{close[0]}`?)"
    return f" (known keys: {', '.join(known)})"


def known_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The field names of the model found at ``path`` under ``model`` ([] if not a model).

    The path goes through models (a field name), mappings (any key: a custom trigger's
    name) and lists (an index), as pydantic's error locations do."""
    current: Any = model
    for part in path:
        current = _child(current, part)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _child(annotation: Any, part: str | int) -> Any:
    """The annotation of ``part`` inside ``annotation`` (None if it has no such part)."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return None if field is None else field.annotation
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple) and args and isinstance(part, int):
        return args[0]
    return None


def _unwrap(annotation: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` and ``X | None``; a union's model member, if any."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        if models or len(members) == 1:
            return _unwrap((models or members)[0])
    return annotation
