"""SCIM filter expressions (RFC 7644 §3.4.2.2) and PATCH paths (RFC 7644 §3.5.2): parser to an AST (pure).

The grammar is the ABNF of RFC 7644 §3.4.2.2, written for a recursive-descent parser. ``and`` binds tighter
than ``or``; both associate to the left; parentheses group::

    filter     = orExp
    orExp      = andExp *("or" andExp)
    andExp     = unary *("and" unary)
    unary      = "not" "(" filter ")" / "(" filter ")" / valuePath / attrExp
    valuePath  = attrPath "[" valFilter "]"             ; valFilter: same grammar, sub-attribute names only
    attrExp    = attrPath "pr" / attrPath compareOp compValue
    compareOp  = "eq" / "ne" / "co" / "sw" / "ew" / "gt" / "lt" / "ge" / "le"
    compValue  = "false" / "null" / "true" / number / string     ; JSON literals (RFC 8259)
    attrPath   = [URI ":"] ATTRNAME ["." ATTRNAME]
    path       = attrPath / valuePath ["." ATTRNAME]             ; PATCH "path" (RFC 7644 §3.5.2)

Keywords, operators and attribute names are case-insensitive (§3.4.2.2); operators are stored in lower case,
attribute names as written (resolving them is the caller's job, see :meth:`AttrPath.key`).

Anything outside the grammar raises :class:`FilterError` with a French message. The parser never raises
another exception, whatever the text: length, nesting and the number of terms are bounded so that neither
the parser nor the code that turns the AST into SQL can exhaust the stack.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any, Mapping, Union

MAX_LENGTH = 4000
MAX_DEPTH = 20
MAX_TERMS = 100

COMPARE_OPERATORS = ("eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le")
# Operators that only make sense with a string or a number (a date is a string in SCIM).
ORDERING_OPERATORS = ("co", "sw", "ew", "gt", "lt", "ge", "le")

Value = Union[str, int, float, bool, None]


class FilterError(ValueError):
    """A filter or a path that the grammar does not accept. ``message`` is French, for the client."""

    def __init__(self, message: str, position: int | None = None) -> None:
        if position is not None:
            message = f"{message} (position {position + 1})"
        super().__init__(message)
        self.message = message
        self.position = position


# --- AST -----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AttrPath:
    """``[uri:]attr[.sub_attr]``, e.g. ``name.familyName`` or ``urn:…:enterprise:2.0:User:employeeNumber``."""

    attr: str
    sub_attr: str | None = None
    uri: str | None = None

    def key(self) -> str:
        """Return the lower-cased dotted name without the URI (``name.familyname``), for look-ups."""
        name = self.attr if self.sub_attr is None else f"{self.attr}.{self.sub_attr}"
        return name.lower()


@dataclasses.dataclass(frozen=True)
class Comparison:
    path: AttrPath
    op: str
    value: Value


@dataclasses.dataclass(frozen=True)
class Present:
    path: AttrPath


@dataclasses.dataclass(frozen=True)
class ValuePath:
    """``emails[type eq "work"]``: the values of a multi-valued attribute that match ``filter``."""

    path: AttrPath
    filter: "Filter"


@dataclasses.dataclass(frozen=True)
class And:
    left: "Filter"
    right: "Filter"


@dataclasses.dataclass(frozen=True)
class Or:
    left: "Filter"
    right: "Filter"


@dataclasses.dataclass(frozen=True)
class Not:
    operand: "Filter"


Filter = Union[Comparison, Present, ValuePath, And, Or, Not]


@dataclasses.dataclass(frozen=True)
class PatchPath:
    """A PATCH target: an attribute, optionally narrowed by a value filter and followed by a sub-attribute
    (``emails[type eq "work"].value``)."""

    path: AttrPath
    filter: Filter | None = None
    sub_attr: str | None = None


# --- tokenizer -----------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<punct>[()\[\]])
  | (?P<string>"(?:[^"\\\x00-\x1f]|\\[^\x00-\x1f])*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?![A-Za-z0-9_.])
  | (?P<word>[A-Za-z][A-Za-z0-9_\-:.]*)
  | (?P<subattr>\.[A-Za-z][A-Za-z0-9_\-]*)
    """,
    re.VERBOSE,
)
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
_URI_RE = re.compile(r"[Uu][Rr][Nn](?::[A-Za-z0-9_\-.]+)+")


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # punct | string | number | word | subattr | end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            if text[pos] == '"':
                raise FilterError("Chaîne de caractères mal formée ou non terminée", pos)
            raise FilterError(f"Caractère inattendu {text[pos]!r}", pos)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _decode_string(token: _Token) -> str:
    try:
        value = json.loads(token.text)
    except ValueError as exc:  # a bad escape such as \x or an incomplete \u
        raise FilterError("Séquence d'échappement invalide dans une chaîne", token.pos) from exc
    if not isinstance(value, str):  # pragma: no cover - the token regex only matches JSON strings
        raise FilterError("Chaîne attendue", token.pos)
    return value


def _decode_number(token: _Token) -> int | float:
    text = token.text
    try:
        if any(c in text for c in ".eE"):
            number = float(text)
            if not math.isfinite(number):
                raise FilterError("Nombre hors limites", token.pos)
            return number
        return int(text)
    except ValueError as exc:  # more digits than Python converts
        raise FilterError("Nombre hors limites", token.pos) from exc


def parse_attr_path(text: str, pos: int = 0) -> AttrPath:
    """Return the :class:`AttrPath` of ``[uri:]attr[.sub]``; raise :class:`FilterError` when malformed."""
    uri: str | None = None
    rest = text
    if ":" in text:
        uri, _, rest = text.rpartition(":")
        if not _URI_RE.fullmatch(uri):
            raise FilterError(f"Nom d'attribut invalide : « {text} »", pos)
    parts = rest.split(".")
    if len(parts) > 2 or not all(_NAME_RE.fullmatch(p) for p in parts):
        raise FilterError(f"Nom d'attribut invalide : « {text} »", pos)
    return AttrPath(parts[0], parts[1] if len(parts) == 2 else None, uri)


# --- parser --------------------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise FilterError("Le filtre doit être une chaîne de caractères")
        if len(text) > MAX_LENGTH:
            raise FilterError(f"Filtre trop long (au plus {MAX_LENGTH} caractères)")
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0
        self.terms = 0

    # Token helpers.
    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def peek(self, offset: int = 1) -> _Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.current
        if token.kind != "end":
            self.index += 1
        return token

    def is_keyword(self, token: _Token, *words: str) -> bool:
        return token.kind == "word" and token.text.lower() in words

    def expect_punct(self, char: str, message: str) -> _Token:
        token = self.current
        if token.kind != "punct" or token.text != char:
            raise FilterError(message, token.pos)
        return self.advance()

    def expect_end(self) -> None:
        token = self.current
        if token.kind != "end":
            raise FilterError(f"Élément inattendu « {token.text} »", token.pos)

    # Grammar.
    def filter(self, inner: bool) -> Filter:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"Filtre trop imbriqué (au plus {MAX_DEPTH} niveaux)", self.current.pos)
        node = self.and_expr(inner)
        while self.is_keyword(self.current, "or"):
            self.advance()
            node = Or(node, self.and_expr(inner))
        self.depth -= 1
        return node

    def and_expr(self, inner: bool) -> Filter:
        node = self.unary(inner)
        while self.is_keyword(self.current, "and"):
            self.advance()
            node = And(node, self.unary(inner))
        return node

    def unary(self, inner: bool) -> Filter:
        token = self.current
        # "not" is a keyword only when a parenthesis follows; otherwise it is an attribute name.
        if self.is_keyword(token, "not") and self.peek().kind == "punct" and self.peek().text == "(":
            self.advance()
            self.advance()
            operand = self.filter(inner)
            self.expect_punct(")", "Parenthèse fermante attendue")
            return Not(operand)
        if token.kind == "punct" and token.text == "(":
            self.advance()
            node = self.filter(inner)
            self.expect_punct(")", "Parenthèse fermante attendue")
            return node
        if token.kind == "end":
            raise FilterError("Filtre incomplet : une expression est attendue", token.pos)
        return self.attr_expr(inner)

    def attr_path(self, inner: bool) -> AttrPath:
        token = self.current
        if token.kind != "word":
            raise FilterError(f"Nom d'attribut attendu au lieu de « {token.text} »", token.pos)
        self.advance()
        path = parse_attr_path(token.text, token.pos)
        if inner and (path.uri is not None or path.sub_attr is not None):
            raise FilterError("Entre crochets, seuls des sous-attributs simples sont permis "
                              f"(« {token.text} »)", token.pos)
        return path

    def attr_expr(self, inner: bool) -> Filter:
        start = self.current
        path = self.attr_path(inner)
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise FilterError(f"Filtre trop complexe (au plus {MAX_TERMS} conditions)", start.pos)
        token = self.current
        if token.kind == "punct" and token.text == "[":
            if inner:
                raise FilterError("Les filtres entre crochets ne s'imbriquent pas", token.pos)
            self.advance()
            value_filter = self.filter(inner=True)
            self.expect_punct("]", "Crochet fermant attendu")
            return ValuePath(path, value_filter)
        if token.kind != "word":
            raise FilterError(f"Opérateur attendu après « {start.text} »", token.pos)
        op = token.text.lower()
        if op == "pr":
            self.advance()
            return Present(path)
        if op not in COMPARE_OPERATORS:
            raise FilterError(f"Opérateur inconnu « {token.text} » (attendu : pr, "
                              f"{', '.join(COMPARE_OPERATORS)})", token.pos)
        self.advance()
        value_token = self.current
        value = self.value()
        if op in ORDERING_OPERATORS and (value is None or isinstance(value, bool)):
            raise FilterError(f"L'opérateur « {op} » demande une chaîne ou un nombre", value_token.pos)
        return Comparison(path, op, value)

    def value(self) -> Value:
        token = self.advance()
        if token.kind == "string":
            return _decode_string(token)
        if token.kind == "number":
            return _decode_number(token)
        if token.kind == "word":
            literal = token.text.lower()
            if literal == "true":
                return True
            if literal == "false":
                return False
            if literal == "null":
                return None
            raise FilterError(f"Valeur attendue au lieu de « {token.text} » (les chaînes s'écrivent "
                              "entre guillemets)", token.pos)
        raise FilterError("Valeur attendue (chaîne entre guillemets, nombre, true, false ou null)", token.pos)


def parse_filter(text: str) -> Filter:
    """Return the AST of a SCIM filter; raise :class:`FilterError` for anything outside the grammar."""
    parser = _Parser(text)
    if parser.current.kind == "end":
        raise FilterError("Filtre vide")
    node = parser.filter(inner=False)
    parser.expect_end()
    return node


def parse_path(text: str) -> PatchPath:
    """Return the :class:`PatchPath` of a PATCH ``path``; raise :class:`FilterError` when malformed."""
    parser = _Parser(text)
    if parser.current.kind == "end":
        raise FilterError("Chemin vide")
    path = parser.attr_path(inner=False)
    value_filter: Filter | None = None
    sub_attr: str | None = None
    token = parser.current
    if token.kind == "punct" and token.text == "[":
        parser.advance()
        value_filter = parser.filter(inner=True)
        parser.expect_punct("]", "Crochet fermant attendu")
        if path.sub_attr is not None:
            raise FilterError("Un filtre entre crochets suit un attribut, pas un sous-attribut", token.pos)
        if parser.current.kind == "subattr":
            sub_attr = parser.advance().text[1:]
    parser.expect_end()
    return PatchPath(path, value_filter, sub_attr)


# --- rendering -----------------------------------------------------------------------------------------

def render_value(value: Value) -> str:
    """Return ``value`` as a filter literal (JSON)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def render_attr_path(path: AttrPath) -> str:
    name = path.attr if path.sub_attr is None else f"{path.attr}.{path.sub_attr}"
    return f"{path.uri}:{name}" if path.uri else name


def _precedence(node: Filter) -> int:
    if isinstance(node, Or):
        return 1
    if isinstance(node, And):
        return 2
    return 3


def render(node: Filter) -> str:
    """Return a filter string that :func:`parse_filter` turns back into an AST equal to ``node``."""
    if isinstance(node, Comparison):
        return f"{render_attr_path(node.path)} {node.op} {render_value(node.value)}"
    if isinstance(node, Present):
        return f"{render_attr_path(node.path)} pr"
    if isinstance(node, ValuePath):
        return f"{render_attr_path(node.path)}[{render(node.filter)}]"
    if isinstance(node, Not):
        return f"not ({render(node.operand)})"
    word = "or" if isinstance(node, Or) else "and"
    mine = _precedence(node)
    left = render(node.left)
    right = render(node.right)
    # Parentheses keep the tree's shape: a weaker operator below, or the same one on the right
    # (the parser associates to the left).
    if _precedence(node.left) < mine:
        left = f"({left})"
    if _precedence(node.right) <= mine:
        right = f"({right})"
    return f"{left} {word} {right}"


def render_path(path: PatchPath) -> str:
    """Return a PATCH path string that :func:`parse_path` turns back into ``path``."""
    text = render_attr_path(path.path)
    if path.filter is not None:
        text += f"[{render(path.filter)}]"
    if path.sub_attr is not None:
        text += f".{path.sub_attr}"
    return text


# --- evaluation on plain values --------------------------------------------------------------------------

def _compare(actual: Any, op: str, expected: Value) -> bool:
    if op == "eq" and expected is None:
        return actual is None
    if op == "ne" and expected is None:
        return actual is not None
    if actual is None:
        return op == "ne"
    if isinstance(actual, str) and isinstance(expected, str):
        # Sub-attributes evaluated here (type, value of e-mails and simple lists) are not case-exact.
        actual, expected = actual.casefold(), expected.casefold()
    elif isinstance(actual, bool) or isinstance(expected, bool):
        if op == "eq":
            return actual is expected
        if op == "ne":
            return actual is not expected
        return False
    elif not (isinstance(actual, (int, float)) and isinstance(expected, (int, float))):
        return op == "ne"
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op in ("co", "sw", "ew"):
        if not isinstance(actual, str):
            return False
        assert isinstance(expected, str)
        return {"co": expected in actual, "sw": actual.startswith(expected), "ew": actual.endswith(expected)}[op]
    return {"gt": actual > expected, "ge": actual >= expected,  # type: ignore[operator]
            "lt": actual < expected, "le": actual <= expected}[op]  # type: ignore[operator]


def matches(node: Filter, record: Mapping[str, Any]) -> bool:
    """Return whether ``record`` (one value of a multi-valued attribute: sub-attribute name → value,
    names in lower case) satisfies a value filter such as ``type eq "work" and value co "@chu"``."""
    if isinstance(node, And):
        return matches(node.left, record) and matches(node.right, record)
    if isinstance(node, Or):
        return matches(node.left, record) or matches(node.right, record)
    if isinstance(node, Not):
        return not matches(node.operand, record)
    if isinstance(node, Present):
        value = record.get(node.path.key())
        return value not in (None, "", [])
    if isinstance(node, Comparison):
        return _compare(record.get(node.path.key()), node.op, node.value)
    return False
