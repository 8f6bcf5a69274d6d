"""kai.api.selectors: label selector semantics (nil vs empty, each operator) and refusals."""
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kai.api.k8s import LabelSelector
from kai.api.selectors import SelectorError, compile_selector


def sel(doc):
    return compile_selector(None if doc is None else msgspec.convert(doc, LabelSelector))


def test_nil_matches_nothing_and_empty_everything():
    assert not sel(None).matches({}) and sel(None).nothing
    assert sel({}).matches({}) and sel({}).matches({"a": "1"}) and sel({}).everything


@pytest.mark.parametrize("expr,labels,want", [
    ({"key": "a", "operator": "In", "values": ["1", "2"]}, {"a": "2"}, True),
    ({"key": "a", "operator": "In", "values": ["1"]}, {}, False),
    ({"key": "a", "operator": "NotIn", "values": ["1"]}, {}, True),          # absent passes NotIn
    ({"key": "a", "operator": "NotIn", "values": ["1"]}, {"a": "1"}, False),
    ({"key": "a", "operator": "Exists"}, {"a": ""}, True),
    ({"key": "a", "operator": "DoesNotExist"}, {"a": "x"}, False),
])
def test_operators(expr, labels, want):
    assert sel({"matchExpressions": [expr]}).matches(labels) is want


def test_match_labels_and_expressions_are_anded():
    s = sel({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]})
    assert s.matches({"app": "web", "tier": "x"}) and not s.matches({"app": "web"})


@pytest.mark.parametrize("expr,msg", [
    ({"key": "a", "operator": "Near", "values": ["1"]}, "operator 'Near'"),
    ({"key": "a", "operator": "In"}, "needs values"),
    ({"key": "a", "operator": "Exists", "values": ["1"]}, "takes no values"),
    ({"key": "", "operator": "Exists"}, "without a key"),
])
def test_refused(expr, msg):
    with pytest.raises(SelectorError, match=msg):
        sel({"matchExpressions": [expr]})


@given(st.dictionaries(st.sampled_from("abc"), st.sampled_from(["1", "2"]), max_size=3),
       st.dictionaries(st.sampled_from("abc"), st.sampled_from(["1", "2"]), max_size=3))
def test_equal_selectors_share_a_key_and_match_labels_is_subset(required, labels):
    s = sel({"matchLabels": required})
    assert s.key == sel({"matchLabels": dict(reversed(list(required.items())))}).key
    assert s.matches(labels) == all(labels.get(k) == v for k, v in required.items())


# ---------------------------------------------------------------- the string form (flags, labelSelector=)
from kai.api.selectors import parse_label_selector, selector_string  # noqa: E402


@pytest.mark.parametrize("text, yes, no", [
    ("", [{}, {"a": "1"}], []),
    ("a=1", [{"a": "1"}], [{}, {"a": "2"}]),
    ("a==1,b", [{"a": "1", "b": ""}], [{"a": "1"}]),
    ("a!=1", [{}, {"a": "2"}], [{"a": "1"}]),
    ("!a", [{}, {"b": "1"}], [{"a": ""}]),
    ("a in (1, 2),b notin (3)", [{"a": "2"}, {"a": "1", "b": "4"}], [{"a": "3"}, {"a": "1", "b": "3"}]),
    ("example.com/team=ml", [{"example.com/team": "ml"}], [{"team": "ml"}]),
])
def test_parse_label_selector(text, yes, no):
    sel = parse_label_selector(text)
    assert all(sel.matches(x) for x in yes) and not any(sel.matches(x) for x in no)
    again = parse_label_selector(selector_string(sel))       # the canonical text round-trips
    assert again == sel


@pytest.mark.parametrize("text", ["a=1,", "a in (", "a in ()", "=1", "a=b c", "-a=1", "a)"])
def test_parse_label_selector_refuses(text):
    with pytest.raises(SelectorError, match="--flag"):
        parse_label_selector(text, "--flag")
