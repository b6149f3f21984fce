"""The SCIM filter and PATCH path parser (RFC 7644 §3.4.2.2, §3.5.2): examples, errors and properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hospiconnect.directory.scim_filter import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_TERMS,
    And,
    AttrPath,
    Comparison,
    FilterError,
    Not,
    Or,
    PatchPath,
    Present,
    ValuePath,
    matches,
    parse_filter,
    parse_path,
    render,
    render_path,
)

HC = "urn:hospiconnect:scim:schemas:extension:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def p(attr: str, sub: str | None = None, uri: str | None = None) -> AttrPath:
    return AttrPath(attr, sub, uri)


def eq(attr: str, value: object) -> Comparison:
    return Comparison(p(attr), "eq", value)  # type: ignore[arg-type]


# --- valid filters -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('userName eq "bjensen"', eq("userName", "bjensen")),
    ('name.familyName co "O\'Malley"', Comparison(p("name", "familyName"), "co", "O'Malley")),
    ('userName sw "J"', Comparison(p("userName"), "sw", "J")),
    ('userName ew "sen"', Comparison(p("userName"), "ew", "sen")),
    ('title pr', Present(p("title"))),
    ('meta.lastModified gt "2011-05-13T04:42:34Z"',
     Comparison(p("meta", "lastModified"), "gt", "2011-05-13T04:42:34Z")),
    ('meta.lastModified ge "2011-05-13T04:42:34Z"',
     Comparison(p("meta", "lastModified"), "ge", "2011-05-13T04:42:34Z")),
    ('birthDate lt "2000-01-01"', Comparison(p("birthDate"), "lt", "2000-01-01")),
    ('birthDate le "2000-01-01"', Comparison(p("birthDate"), "le", "2000-01-01")),
    ('active ne true', Comparison(p("active"), "ne", True)),
    ('active eq false', eq("active", False)),
    ('externalId eq null', eq("externalId", None)),
    ('count gt 42', Comparison(p("count"), "gt", 42)),
    ('ratio le -0.5', Comparison(p("ratio"), "le", -0.5)),
    ('size eq 1.5E3', eq("size", 1500.0)),
    ('size eq 0', eq("size", 0)),
    (f'{CORE}:userName eq "x"', Comparison(p("userName", None, CORE), "eq", "x")),
    (f'{ENTERPRISE}:employeeNumber eq "701984"', Comparison(p("employeeNumber", None, ENTERPRISE), "eq", "701984")),
    (f'{HC}:rpps sw "10"', Comparison(p("rpps", None, HC), "sw", "10")),
    (f'{CORE}:name.familyName eq "x"', Comparison(p("name", "familyName", CORE), "eq", "x")),
    ('emails[type eq "work" and value co "@chu"]',
     ValuePath(p("emails"), And(eq("type", "work"), Comparison(p("value"), "co", "@chu")))),
    ('emails[not (type eq "home")]', ValuePath(p("emails"), Not(eq("type", "home")))),
    ('roles[value eq "ide" or value eq "medecin"]',
     ValuePath(p("roles"), Or(eq("value", "ide"), eq("value", "medecin")))),
    ('userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
     And(eq("userType", "Employee"),
         ValuePath(p("emails"), And(eq("type", "work"), Comparison(p("value"), "co", "@example.com"))))),
    ('  userName   eq\t"x"  ', eq("userName", "x")),
    ('(userName eq "x")', eq("userName", "x")),
    ('((((userName eq "x"))))', eq("userName", "x")),
    ('not(a pr)', Not(Present(p("a")))),
    ('not eq "x"', eq("not", "x")),  # "not" without a parenthesis is an attribute name
    ('emails eq "a@b.fr" ', eq("emails", "a@b.fr")),
    ('a-b_c9 pr', Present(p("a-b_c9"))),
])
def test_valid_filters(text: str, expected: object) -> None:
    assert parse_filter(text) == expected


def test_keywords_and_operators_are_case_insensitive() -> None:
    node = parse_filter('USERNAME EQ "x" AND Active Eq TRUE OR NOT (title PR) or x eq NULL')
    assert node == Or(
        Or(And(Comparison(p("USERNAME"), "eq", "x"), Comparison(p("Active"), "eq", True)), Not(Present(p("title")))),
        Comparison(p("x"), "eq", None),
    )
    # Attribute names keep their spelling; AttrPath.key() is the case-insensitive look-up key.
    assert AttrPath("Name", "FamilyName").key() == "name.familyname"


# --- precedence and associativity ----------------------------------------------------------------------------

def test_and_binds_tighter_than_or() -> None:
    assert parse_filter("a pr or b pr and c pr") == Or(Present(p("a")), And(Present(p("b")), Present(p("c"))))
    assert parse_filter("a pr and b pr or c pr") == Or(And(Present(p("a")), Present(p("b"))), Present(p("c")))


def test_parentheses_override_precedence() -> None:
    assert parse_filter("(a pr or b pr) and c pr") == And(Or(Present(p("a")), Present(p("b"))), Present(p("c")))
    assert parse_filter("a pr and (b pr or c pr)") == And(Present(p("a")), Or(Present(p("b")), Present(p("c"))))


def test_operators_associate_to_the_left() -> None:
    assert parse_filter("a pr or b pr or c pr") == Or(Or(Present(p("a")), Present(p("b"))), Present(p("c")))
    assert parse_filter("a pr and b pr and c pr") == And(And(Present(p("a")), Present(p("b"))), Present(p("c")))


def test_not_applies_to_its_parenthesised_group_only() -> None:
    assert parse_filter("not (a pr) and b pr") == And(Not(Present(p("a"))), Present(p("b")))
    assert parse_filter("not (a pr or b pr)") == Not(Or(Present(p("a")), Present(p("b"))))


def test_rfc_example_with_nested_groups() -> None:
    text = 'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")'
    assert parse_filter(text) == And(
        eq("userType", "Employee"),
        Or(Comparison(p("emails"), "co", "example.com"), Comparison(p("emails", "value"), "co", "example.org")),
    )


# --- string escapes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("literal, value", [
    (r'"a\"b"', 'a"b'),
    (r'"back\\slash"', "back\\slash"),
    (r'"\/"', "/"),
    (r'"\u00e9t\u00E9"', "été"),
    (r'"\ud83d\ude00"', "\U0001F600"),
    (r'"tab\there\nline"', "tab\there\nline"),
    (r'"\b\f\r"', "\b\f\r"),
    ('"Lefèvre-Durand"', "Lefèvre-Durand"),
    ('""', ""),
    ('"a]b) and c"', "a]b) and c"),
])
def test_json_string_escapes(literal: str, value: str) -> None:
    assert parse_filter(f"x eq {literal}") == eq("x", value)


# --- errors -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "",
    "   ",
    "userName",
    "userName eq",
    "userName eq bjensen",  # unquoted string
    "userName eq 'bjensen'",  # single quotes are not JSON
    'userName equals "x"',
    'userName eq "x" and',
    'userName eq "x" or or b pr',
    'and userName eq "x"x',
    '(userName eq "x"',
    'userName eq "x")',
    'not userName eq "x"',
    "not ()",
    "()",
    'userName eq "unterminated',
    r'userName eq "bad \x escape"',
    r'userName eq "bad \u12 escape"',
    'userName eq "raw\ncontrol"',
    'a gt true',
    'a co null',
    'a sw false',
    'emails[type eq "work"',
    'emails[]',
    'emails[type eq "work"].value eq "x"',  # a sub-attribute after brackets is for PATCH paths only
    'emails[roles[value pr]]',
    'emails[urn:x:y:type eq "work"]',
    'emails[name.given pr]',
    'a.b.c pr',
    'a. pr',
    '.a pr',
    '9a pr',
    'urn eq "x"' + ":",
    'urn:x eq "x"',
    ':a pr',
    'a eq 01',
    'a eq 1.',
    'a eq .5',
    'a eq +1',
    'a eq 1e999',
    'a eq 12abc',
    'a eq "x" b eq "y"',
    'a pr pr',
    'a eq "x" [',
    'a eq "x" ]',
    "userName eq \"x\" & b pr",
    "a eq tru",
    "€ pr",
    "a eq \"x\"\x00",
    "a eq " + "9" * (MAX_LENGTH - 4),
])
def test_invalid_filters_raise_filter_error(text: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert info.value.message  # a French explanation for the client


def test_errors_give_the_position() -> None:
    with pytest.raises(FilterError) as info:
        parse_filter('userName eq "x" and nom eq bjensen')
    assert info.value.position == 27
    assert "position 28" in info.value.message


def test_filter_length_nesting_and_terms_are_bounded() -> None:
    with pytest.raises(FilterError, match="trop long"):
        parse_filter('a eq "' + "x" * MAX_LENGTH + '"')
    with pytest.raises(FilterError, match="imbriqué"):
        parse_filter("(" * (MAX_DEPTH + 1) + "a pr" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(FilterError, match="imbriqué"):
        parse_filter("not (" * (MAX_DEPTH + 1) + "a pr" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(FilterError, match="complexe"):
        parse_filter(" or ".join(["a pr"] * (MAX_TERMS + 1)))
    assert parse_filter(" or ".join(["a pr"] * MAX_TERMS))


def test_non_string_input_is_a_filter_error() -> None:
    with pytest.raises(FilterError):
        parse_filter(None)  # type: ignore[arg-type]
    with pytest.raises(FilterError):
        parse_filter(42)  # type: ignore[arg-type]


# --- PATCH paths ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("active", PatchPath(p("active"))),
    ("name.familyName", PatchPath(p("name", "familyName"))),
    ("userName", PatchPath(p("userName"))),
    (f"{HC}:rpps", PatchPath(p("rpps", None, HC))),
    (HC, PatchPath(p("User", None, "urn:hospiconnect:scim:schemas:extension:2.0"))),
    ('emails[type eq "work"].value', PatchPath(p("emails"), eq("type", "work"), "value")),
    ('emails[type eq "work"]', PatchPath(p("emails"), eq("type", "work"))),
    (f'{HC}:roles[value eq "ide"]', PatchPath(p("roles", None, HC), eq("value", "ide"))),
    ('members[value eq "2819c223"].display', PatchPath(p("members"), eq("value", "2819c223"), "display")),
])
def test_patch_paths(text: str, expected: PatchPath) -> None:
    assert parse_path(text) == expected
    assert parse_path(render_path(expected)) == expected


@pytest.mark.parametrize("text", [
    "", "a b", "a.b.c", 'emails[type eq "work"]value', 'emails[type eq "work"].value.x',
    'name.familyName[value pr]', "emails[", "a pr", 'emails[type eq "work"].', "[a pr]", "a)",
])
def test_invalid_patch_paths(text: str) -> None:
    with pytest.raises(FilterError):
        parse_path(text)


# --- rendering ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, rendered", [
    ('userName Eq "x"', 'userName eq "x"'),
    ("a pr or b pr and c pr", "a pr or b pr and c pr"),
    ("(a pr or b pr) and c pr", "(a pr or b pr) and c pr"),
    ("a pr or (b pr or c pr)", "a pr or (b pr or c pr)"),
    ("a pr and (b pr and c pr)", "a pr and (b pr and c pr)"),
    ("((a pr))", "a pr"),
    ("not(a pr)", "not (a pr)"),
    ('x eq "\\u00e9\\"\\n"', 'x eq "é\\"\\n"'),
    ("x eq 1.5e3", "x eq 1500.0"),
    ('emails[type eq "work" and value co "@chu"]', 'emails[type eq "work" and value co "@chu"]'),
])
def test_render(text: str, rendered: str) -> None:
    assert render(parse_filter(text)) == rendered


# --- evaluation on values (PATCH value filters) ----------------------------------------------------------------

def test_matches_on_a_record() -> None:
    email = {"value": "Claire.Martin@CHU.fr", "type": "work", "primary": True}
    assert matches(parse_filter('type eq "work"'), email)
    assert matches(parse_filter('type eq "WORK" and value co "@chu"'), email)  # not case-exact
    assert matches(parse_filter('primary eq true and value ew ".fr"'), email)
    assert matches(parse_filter('not (type eq "home")'), email)
    assert matches(parse_filter('display pr or value sw "claire"'), email)
    assert not matches(parse_filter('type eq "home"'), email)
    assert not matches(parse_filter("display pr"), email)
    assert not matches(parse_filter("primary eq false"), email)
    assert not matches(parse_filter('primary eq "true"'), email)
    assert matches(parse_filter("display eq null"), email)
    assert matches(parse_filter('display ne "x"'), email)
    assert not matches(parse_filter("value gt 3"), email)
    assert matches(parse_filter("n gt 3 and n le 4"), {"n": 4})


# --- properties -------------------------------------------------------------------------------------------------

_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,7}", fullmatch=True)
_uris = st.from_regex(r"urn(:[A-Za-z0-9_.\-]{1,8}){1,5}", fullmatch=True)
_attr_paths = st.builds(AttrPath, _names, st.none() | _names, st.none() | _uris)
_simple_paths = st.builds(AttrPath, _names)
_values = (
    st.text(max_size=20)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
)
_ordering = st.sampled_from(["co", "sw", "ew", "gt", "ge", "lt", "le"])


def _comparisons(paths: st.SearchStrategy[AttrPath]) -> st.SearchStrategy[Comparison]:
    any_value = st.builds(Comparison, paths, st.sampled_from(["eq", "ne"]), _values)
    ordered = st.builds(Comparison, paths, _ordering,
                        st.text(max_size=20) | st.integers(-1000, 1000) | st.floats(allow_nan=False,
                                                                                  allow_infinity=False))
    return any_value | ordered


def _trees(leaves: st.SearchStrategy) -> st.SearchStrategy:  # type: ignore[type-arg]
    return st.recursive(
        leaves,
        lambda children: st.builds(And, children, children) | st.builds(Or, children, children)
        | st.builds(Not, children),
        max_leaves=12,
    )


_inner = _trees(_comparisons(_simple_paths) | st.builds(Present, _simple_paths))
_leaves = _comparisons(_attr_paths) | st.builds(Present, _attr_paths) | st.builds(ValuePath, _attr_paths, _inner)
_filters = _trees(_leaves)


def _depth(node: object) -> int:
    if isinstance(node, (And, Or)):
        return 1 + max(_depth(node.left), _depth(node.right))
    if isinstance(node, Not):
        return 1 + _depth(node.operand)
    if isinstance(node, ValuePath):
        return 1 + _depth(node.filter)
    return 0


def _terms(node: object) -> int:
    if isinstance(node, (And, Or)):
        return _terms(node.left) + _terms(node.right)
    if isinstance(node, Not):
        return _terms(node.operand)
    if isinstance(node, ValuePath):
        return 1 + _terms(node.filter)
    return 1


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_filters)
def test_render_then_parse_gives_the_same_ast(node: object) -> None:
    assume(_depth(node) < MAX_DEPTH and _terms(node) <= MAX_TERMS)
    text = render(node)  # type: ignore[arg-type]
    parsed = parse_filter(text)
    assert parsed == node
    # Equality alone would confuse true with 1: the rendered text tells them apart.
    assert render(parsed) == text


@settings(max_examples=200)
@given(_attr_paths, st.none() | _inner, st.none() | _names)
def test_render_then_parse_path_gives_the_same_path(path: AttrPath, value_filter: object, sub: str | None) -> None:
    assume(value_filter is not None or sub is None)
    assume(value_filter is None or path.sub_attr is None)
    assume(value_filter is None or _depth(value_filter) < MAX_DEPTH)
    target = PatchPath(path, value_filter, sub)  # type: ignore[arg-type]
    assert parse_path(render_path(target)) == target


_fragments = st.sampled_from([
    "(", ")", "[", "]", "and", "or", "not", "not(", "eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr",
    '"x"', '"', "\\", '"\\u12"', '"\\ud800"', "1", "-1", "1e5", "1e999", "true", "null", "userName", "emails",
    ".value", "name.familyName", f"{HC}:rpps", "urn:", ":", ".", " ", "\x00", "é", "\U0001F600",
])


@settings(max_examples=600)
@given(st.text(max_size=120) | st.lists(_fragments, max_size=30).map(" ".join)
       | st.lists(_fragments, max_size=30).map("".join))
def test_any_text_parses_or_raises_filter_error_only(text: str) -> None:
    for parse in (parse_filter, parse_path):
        try:
            parse(text)
        except FilterError as exc:
            assert isinstance(exc.message, str) and exc.message
