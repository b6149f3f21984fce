"""Reading YAML nodes with their line numbers (pure helpers of the policy loader).

PyYAML's composer gives a tree of nodes that know where they start in the file; :class:`NodeReader` walks it,
converts scalars with the *safe* constructor only, and collects one :class:`PolicyIssue` per problem instead
of stopping at the first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import ipaddress
import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hospiconnect.policies.policy import IPNetwork

_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
MAX_NODES = 20_000  # YAML aliases can multiply nodes ("billion laughs"): the walk stops here


@dataclasses.dataclass(frozen=True, order=True)
class PolicyIssue:
    """One problem of a policy file: ``line`` (1-based, None when it concerns the whole file) and a French message."""

    line: int | None
    message: str

    def render(self, source: str) -> str:
        return f"{source}:{self.line} : {self.message}" if self.line else f"{source} : {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


class TooComplex(Exception):
    """The file has more than :data:`MAX_NODES` nodes."""


class NodeReader:
    """Walks YAML nodes, converts scalars and collects :class:`PolicyIssue` values (never raises on bad input)."""

    def __init__(self) -> None:
        self.issues: list[PolicyIssue] = []
        self._seen = 0
        self._constructor = SafeConstructor()

    # -- reporting ------------------------------------------------------------------------------------------

    def error(self, node: Node | None, message: str) -> None:
        self.issues.append(PolicyIssue(node.start_mark.line + 1 if node is not None else None, message))

    @staticmethod
    def line(node: Node) -> int:
        return node.start_mark.line + 1

    def _count(self) -> None:
        self._seen += 1
        if self._seen > MAX_NODES:
            raise TooComplex

    # -- structure ------------------------------------------------------------------------------------------

    def mapping(self, node: Node, what: str, *, allowed: tuple[str, ...] | None = None,
                required: tuple[str, ...] = (), owner: Node | None = None) -> dict[str, tuple[Node, Node]] | None:
        """Return the entries of a mapping as ``{key: (key node, value node)}``; report keys that are not text,
        duplicated, unknown (when ``allowed`` is given) or missing (``required``, reported on the line of
        ``owner``, the key that holds the mapping, when given)."""
        self._count()
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} : une table « clé: valeur » est attendue")
            return None
        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            self._count()
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.error(key_node, f"{what} : les fusions YAML « << » ne sont pas prises en charge")
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                self.error(key_node, f"{what} : clé {self._show(key_node)} invalide (du texte est attendu)")
                continue
            key = key_node.value
            if key in entries:
                self.error(key_node, f"{what} : clé « {key} » en double (déjà ligne {self.line(entries[key][0])})")
                continue
            if allowed is not None and key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                self.error(key_node, f"{what} : clé inconnue « {key} »"
                           + (f" (vouliez-vous dire « {hint[0]} » ?)" if hint else
                              f" (clés possibles : {', '.join(allowed)})"))
                continue
            entries[key] = (key_node, value_node)
        for key in required:
            if key not in entries:
                self.error(owner or node, f"{what} : clé obligatoire « {key} » absente")
        return entries

    def sequence(self, node: Node, what: str) -> list[Node] | None:
        self._count()
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what} : une liste est attendue")
            return None
        for _ in node.value:
            self._count()
        return list(node.value)

    def names(self, node: Node, what: str) -> list[tuple[str, Node]] | None:
        """Return a text or a list of texts as ``[(text, node)]`` (one name may be written without a list)."""
        items = [node] if isinstance(node, ScalarNode) else self.sequence(node, what)
        if items is None:
            return None
        result: list[tuple[str, Node]] = []
        for item in items:
            value = self.text(item, what)
            if value is None:
                continue
            if value in (v for v, _ in result):
                self.error(item, f"{what} : « {value} » figure deux fois")
                continue
            result.append((value, item))
        return result

    # -- scalars --------------------------------------------------------------------------------------------

    def scalar(self, node: Node, what: str) -> tuple[bool, Any]:
        self._count()
        if not isinstance(node, ScalarNode):
            self.error(node, f"{what} : une valeur simple est attendue")
            return False, None
        try:
            return True, self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            self.error(node, f"{what} : valeur illisible {self._show(node)}")
            return False, None

    def text(self, node: Node, what: str, *, pattern: re.Pattern[str] | None = None) -> str | None:
        ok, value = self.scalar(node, what)
        if not ok:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(node, f"{what} : un texte non vide est attendu (reçu {self._show(node)})")
            return None
        if pattern is not None and not pattern.match(value):
            self.error(node, f"{what} : « {value} » n'est pas un identifiant valide "
                             "(minuscules sans accents, chiffres, « - », « _ » ou « . »)")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        ok, value = self.scalar(node, what)
        if ok and isinstance(value, bool):
            return value
        if ok:
            self.error(node, f"{what} : true ou false est attendu (reçu {self._show(node)})")
        return None

    def integer(self, node: Node, what: str, choices: tuple[int, ...]) -> int | None:
        ok, value = self.scalar(node, what)
        if ok and isinstance(value, int) and not isinstance(value, bool) and value in choices:
            return value
        if ok:
            self.error(node, f"{what} : {' ou '.join(map(str, choices))} attendu (reçu {self._show(node)})")
        return None

    def date(self, node: Node, what: str) -> dt.date | None:
        """Return the date written ``AAAA-MM-JJ`` (plain or quoted); report anything else."""
        self._count()
        if not isinstance(node, ScalarNode):
            self.error(node, f"{what} : une date est attendue (AAAA-MM-JJ)")
            return None
        text = node.value.strip()
        if node.tag in (_TIMESTAMP, _STR) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                self.error(node, f"{what} : date inexistante « {text} »")
                return None
        if node.tag == _TIMESTAMP:
            self.error(node, f"{what} : une date sans heure est attendue (AAAA-MM-JJ, reçu « {text} »)")
        else:
            self.error(node, f"{what} : date invalide {self._show(node)} (format AAAA-MM-JJ, ex. 2026-01-01)")
        return None

    def choice(self, node: Node, what: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(node, what)
        if value is None:
            return None
        if value not in choices:
            hint = difflib.get_close_matches(value, choices, n=1)
            self.error(node, f"{what} : valeur inconnue « {value} » (attendu : {', '.join(choices)})"
                       + (f" — vouliez-vous dire « {hint[0]} » ?" if hint else ""))
            return None
        return value

    @staticmethod
    def _show(node: Node) -> str:
        if isinstance(node, ScalarNode):
            return f"« {node.value} »" if node.value != "" else "vide"
        return "une liste" if isinstance(node, SequenceNode) else "une table"

    # -- networks -------------------------------------------------------------------------------------------

    def cidr(self, node: Node, what: str) -> IPNetwork | None:
        value = self.text(node, what)
        if value is None:
            return None
        try:
            return ipaddress.ip_network(value.strip(), strict=True)
        except ValueError as exc:
            detail = "bits d'hôte non nuls" if "host bits" in str(exc) else "notation CIDR attendue, ex. 10.0.0.0/8"
            self.error(node, f"{what} : réseau invalide « {value} » ({detail})")
            return None
