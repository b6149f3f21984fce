"""Policy files: YAML → :class:`~hospiconnect.policies.policy.Policy`, validated, every error with its line.

The file is read with PyYAML's safe composer (no object construction, no custom tags), then walked node by
node (:mod:`hospiconnect.policies.reader`, :mod:`hospiconnect.policies.schema`) so that each problem names the
line it is on. Every problem is collected before :class:`PolicyError` is raised: the person editing the file
sees them all at once. Nothing is returned unless the whole file is valid, so a caller that keeps the policy
in force until a new one loads never runs half a file.

The format is documented in the README ("Access policies (policy file)") and by the shipped
``hospiconnect/policies/rie-2026.yaml``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from yaml.nodes import Node

from hospiconnect.errors import HospiConnectError
from hospiconnect.policies import schema
from hospiconnect.policies.policy import Policy
from hospiconnect.policies.reader import MAX_NODES, NodeReader, PolicyIssue, TooComplex

#: The policy shipped with the product (the RIE rules as of 2026), used when HOSPICONNECT_POLICY_FILE is unset.
#: It lives inside the package so that it is found from a checkout, an editable install and a wheel alike.
DEFAULT_POLICY_PATH = Path(__file__).resolve().with_name("rie-2026.yaml")

MAX_BYTES = 1_000_000  # a policy is a few kilobytes; this bounds what a mistaken path can cost
MAX_LISTED = 50  # errors spelled out in the message (all of them stay in PolicyError.issues)

# PyYAML's problems are in English; the usual ones are given in French, the others are quoted.
_YAML_PROBLEMS_FR = (
    ("expected a single document", "un seul document YAML est attendu (retirez les « --- » supplémentaires)"),
    ("mapping values are not allowed here", "« : » inattendu (une valeur contenant « : » doit être entre guillemets)"),
    ("found character '\\t'", "tabulation interdite : indentez avec des espaces"),
    ("could not find expected ':'", "« : » attendu après une clé"),
    ("found undefined alias", "alias YAML non défini"),
    ("expected <block end>", "indentation incohérente"),
    ("found unexpected end of stream", "fin de fichier inattendue (guillemet ou crochet non fermé ?)"),
    ("found duplicate anchor", "ancre YAML définie deux fois"),
    ("expected the node content", "valeur attendue (crochet, accolade ou guillemet non fermé ?)"),
    ("did not find expected key", "clé attendue (indentation incohérente ?)"),
    ("did not find expected ',' or ']'", "« , » ou « ] » attendu (liste non fermée ?)"),
    ("did not find expected ',' or '}'", "« , » ou « } » attendu (table non fermée ?)"),
    ("found unexpected ':'", "« : » inattendu"),
)


class PolicyError(HospiConnectError):
    """The policy file is invalid; ``issues`` lists every problem found, ordered by line."""

    code = "policy_invalid"

    def __init__(self, source: str, issues: list[PolicyIssue]) -> None:
        self.source = source
        self.issues = tuple(sorted(issues, key=lambda i: (i.line or 0, i.message)))
        count = len(self.issues)
        lines = "\n".join(i.render(source) for i in self.issues[:MAX_LISTED])
        if count > MAX_LISTED:
            lines += f"\n… et {count - MAX_LISTED} autre(s) erreur(s)"
        super().__init__(f"politique invalide « {source} » ({count} erreur{'s' if count > 1 else ''}) :\n{lines}")


class PolicyUnreadable(PolicyError):
    """The policy file cannot be read at all (missing, not UTF-8, too large)."""

    code = "policy_unreadable"


def load_policy(path: str | Path) -> Policy:
    """Return the policy in the file at ``path``.

    Raises :class:`PolicyUnreadable` when the file cannot be read, :class:`PolicyError` when it is invalid.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyUnreadable(str(path), [PolicyIssue(None, f"fichier illisible ({exc.strerror or exc})")]) from exc
    if len(data) > MAX_BYTES:
        raise PolicyUnreadable(str(path), [PolicyIssue(None, f"fichier trop gros (plus de {MAX_BYTES} octets)")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyUnreadable(str(path), [PolicyIssue(None, "le fichier doit être encodé en UTF-8")]) from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, name: str = "<politique>") -> Policy:
    """Return the policy written in ``text`` (``name`` names it in messages and in ``Policy.source``).

    Raises :class:`PolicyError` listing every problem.
    """
    reader = NodeReader()
    root: Node | None = None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reader.issues.append(PolicyIssue(mark.line + 1 if mark else None, _yaml_problem_fr(exc)))
    except yaml.YAMLError as exc:  # e.g. a control character in the text: no position
        reader.issues.append(PolicyIssue(None, f"YAML illisible ({exc})"))
    if reader.issues:
        raise PolicyError(name, reader.issues)
    if root is None:
        raise PolicyError(name, [PolicyIssue(None, "le fichier est vide")])
    policy: Policy | None = None
    try:
        policy = schema.build(reader, root, source=name, digest=hashlib.sha256(text.encode("utf-8")).hexdigest())
    except TooComplex:
        reader.issues.append(PolicyIssue(None, f"fichier trop complexe (plus de {MAX_NODES} éléments)"))
    if reader.issues or policy is None:
        raise PolicyError(name, reader.issues)
    return policy


def _yaml_problem_fr(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or exc.context or "erreur de syntaxe"
    for english, french in _YAML_PROBLEMS_FR:
        if any(text and text.startswith(english) for text in (exc.context, exc.problem)):
            return f"YAML mal formé : {french}"
    return f"YAML mal formé ({problem})"
