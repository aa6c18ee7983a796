"""Checking YAML documents field by field, with the line of every mistake."""

from __future__ import annotations

import re
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lrconsole.errors import UserError

__all__ = ["Checker", "Node", "load_nodes"]


class YamlError(UserError):
    """A YAML file that is malformed or does not fit its schema."""


class Loader(yaml.SafeLoader):
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


def load_nodes(text: str, source: str) -> Node:
    """Parse `text` into a node tree, keeping line numbers; errors name the line."""
    try:
        node = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise YamlError(f"{source}{line}: malformed YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: malformed YAML: {exc}") from None
    if node is None:
        raise YamlError(f"{source}: the file is empty")
    return node


class Checker:
    """Reads typed values out of nodes; every failure names the file, line and field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: Node, where: str | None, message: str) -> NoReturn:
        prefix = f"{where}: " if where else ""
        line = node.start_mark.line + 1
        raise YamlError(f"{self.source}:{line}: {prefix}{message}")

    def mapping(
        self,
        node: Node,
        where: str,
        required: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
    ) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            self.fail(node, where, "must be a mapping of fields")
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key not in required and key not in optional:
                known = ", ".join(required + optional)
                self.fail(key_node, where, f"unknown field {key!r} (known: {known})")
            if key in out:
                self.fail(key_node, where, f"field {key!r} appears twice")
            out[key] = value_node
        for key in required:
            if key not in out:
                self.fail(node, where, f"missing field {key!r}")
        return out

    def sequence(self, node: Node, where: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.fail(node, where, "must be a list")
        return list(node.value)

    def plain(self, node: Node, where: str, kind: type) -> Any:
        """The node as plain Python data, which must be of `kind`."""
        value = Loader("").construct_object(node, deep=True)
        if not isinstance(value, kind):
            self.fail(node, where, f"must be a {kind.__name__}, got {value!r}")
        return value

    def string(self, node: Node, where: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.fail(node, where, f"must be a string, got {node.value!r}")
        return str(node.value)

    def integer(self, node: Node, where: str, minimum: int | None = None) -> int:
        value = self.plain(node, where, object)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, where, f"must be a whole number, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(node, where, f"must be at least {minimum}, got {value}")
        return value

    def field_node(self, node: Node, message: str) -> Node:
        """The value node of the field `message` is about, else `node` itself."""
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if f".{key_node.value}:" in message or f"'{key_node.value}'" in message:
                    return value_node
        return node
