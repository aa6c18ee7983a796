"""YAML documents as plain data plus the line of every value, for schema errors.

Only YAML's plain types are built (any `!!python/...` or other tag is refused on its
line); a key given twice at any level is refused; a file over FILE_MAX bytes or one
whose aliases expand past NODES_MAX values is refused before it is built. A FieldError
from the schema is turned into `file:line: message` by `Doc.error`, from its path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lrconsole.core.plan.schema import FILE_MAX, NODES_MAX, FieldError, FieldPath, YamlError
from lrconsole.errors import UserError

__all__ = ["Doc", "Loader", "load", "too_big"]

MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"
# The scalar types SafeLoader builds; everything else (python/..., !custom) is refused.
SCALAR_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "timestamp", "binary")
}


# libyaml's parser where installed: it reads a big file about 2.5 times as fast.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that also reads `1e-3` as a float (YAML 1.1 wants `1.0e-3`)."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass
class Doc:
    """A loaded document: its data, and the 1-based line of each value and key by path."""

    source: str
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)
    key_lines: dict[FieldPath, int] = field(default_factory=dict)

    def line_of(self, path: FieldPath, on_key: bool = False) -> int:
        """The line of `path`, or of the nearest enclosing value that is in the file."""
        if on_key and path in self.key_lines:
            return self.key_lines[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1

    def error(self, exc: FieldError, make: Callable[[str], UserError] = YamlError) -> UserError:
        """`exc` as one line, `file:line: message`."""
        return make(f"{self.source}:{self.line_of(exc.path, exc.on_key)}: {exc}")


def too_big(path: Path) -> str | None:
    """Why the file at `path` is refused unread, or None (missing: the read says so)."""
    try:
        size = path.stat().st_size
    except OSError:
        return None
    return (
        f"{path}: {size:,} bytes is too big (the limit is {FILE_MAX:,})"
        if size > FILE_MAX
        else None
    )


def load(text: str, source: str) -> Doc:
    """Parse `text`; YAML errors, tags, duplicate keys and size name the file (and line)."""
    if len(text) > FILE_MAX:
        raise YamlError(f"{source}: {len(text):,} bytes is too big (the limit is {FILE_MAX:,})")
    try:
        root = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise YamlError(f"{source}{line}: malformed YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: malformed YAML: {exc}") from None
    if root is None:
        raise YamlError(f"{source}: the file is empty")
    doc = Doc(source, None)
    doc.data = _Builder(doc).build(root, ())
    return doc


class _Builder:
    """Builds plain data from nodes, recording lines; every refusal names its line."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.constructor = Loader("")
        self.count = 0

    def fail(self, node: Node, message: str) -> NoReturn:
        raise YamlError(f"{self.doc.source}:{node.start_mark.line + 1}: {message}")

    def build(self, node: Node, path: FieldPath) -> Any:
        self.count += 1
        if self.count > NODES_MAX:
            self.fail(node, f"more than {NODES_MAX:,} values (aliases expanded): too big")
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode) and node.tag == SEQ_TAG:
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode) and node.tag == MAP_TAG:
            return self.mapping(node, path)
        self.refuse_tag(node, path)

    def refuse_tag(self, node: Node, path: FieldPath) -> NoReturn:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        where = f"{path_label(path)}: " if path else ""
        self.fail(node, f"{where}the tag {tag} is not allowed here (plain YAML only)")

    def scalar(self, node: ScalarNode, path: FieldPath) -> Any:
        if node.tag not in SCALAR_TAGS:
            self.refuse_tag(node, path)
        try:
            return self.constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError, OverflowError) as exc:
            self.fail(node, f"cannot read {node.value[:40]!r}: {exc}".splitlines()[0])

    def mapping(self, node: MappingNode, path: FieldPath) -> dict[Any, Any]:
        try:
            self.constructor.flatten_mapping(node)  # `<<: *base` merges
        except ConstructorError as exc:
            self.fail(node, f"bad merge: {exc.problem}")
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, "a key must be plain text or a number")
            key = self.scalar(key_node, path)
            if key in out:
                shown = f"{path_label(path)}: " if path else ""
                self.fail(key_node, f"{shown}the key {key!r} appears twice")
            sub = (*path, str(key))
            self.doc.key_lines[sub] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, sub)
        return out


def path_label(path: FieldPath) -> str:
    """("segments", 2, "lr") -> segments[2].lr"""
    out = ""
    for key in path:
        out = f"{out}[{key}]" if isinstance(key, int) else f"{out}.{key}" if out else key
    return out
