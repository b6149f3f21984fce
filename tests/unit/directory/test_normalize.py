from hypothesis import given
from hypothesis import strategies as st

from hospiconnect.directory.normalize import first_given_name, normalize_name


def test_case_accents_and_hyphens_do_not_matter():
    assert normalize_name("Lefèvre-Durand") == normalize_name("LEFEVRE DURAND") == normalize_name(" lefevre  durand ")
    assert normalize_name("Œillet") == "oeillet"
    assert normalize_name("D'Artagnan") == normalize_name("d artagnan")
    assert normalize_name("Hélène") != normalize_name("Helena")


def test_first_given_name():
    assert first_given_name("Marie Claire Anne") == "Marie"
    assert first_given_name("Jean-Pierre, Paul") == "Jean-Pierre"
    assert first_given_name("  ") == ""


names = st.text(alphabet=st.characters(categories=["Lu", "Ll", "Zs", "Pd", "Mn"]), max_size=40)


@given(names)
def test_idempotent(value):
    once = normalize_name(value)
    assert normalize_name(once) == once


@given(names)
def test_insensitive_to_case_and_hyphens(value):
    assert normalize_name(value.upper()) == normalize_name(value.lower()) or value.upper().lower() != value.lower()
    assert normalize_name(value.replace(" ", "-")) == normalize_name(value)


@given(names)
def test_output_is_plain(value):
    out = normalize_name(value)
    assert out == out.strip()
    assert "  " not in out
    assert "-" not in out
    assert out == out.casefold()


@given(st.sampled_from(["é", "è", "ê", "ë"]), st.text(alphabet="abcdefghij", min_size=1, max_size=10))
def test_accents_removed(accent, stem):
    assert normalize_name(stem + accent) == normalize_name(stem + "e")
