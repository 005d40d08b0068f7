# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.sandbox._selectors import (
    SelectorError,
    object_fields,
    parse_field_selector,
    parse_label_selector,
)

keys = st.from_regex(r"\A[a-z]([a-z0-9.-]{0,8}[a-z0-9])?\Z")
values = st.from_regex(r"\A([a-z0-9]([a-z0-9._-]{0,6}[a-z0-9])?)?\Z")
labels = st.dictionaries(keys, values, max_size=5)


@pytest.mark.parametrize(
    ("selector", "matching", "other"),
    [
        ("app=x", {"app": "x"}, {"app": "y"}),
        ("app==x,tier!=db", {"app": "x", "tier": "web"}, {"app": "x", "tier": "db"}),
        ("app in (a, b)", {"app": "b"}, {"app": "c"}),
        ("app notin (a,b)", {}, {"app": "a"}),
        ("app", {"app": ""}, {}),
        ("!app", {}, {"app": "x"}),
        ("n>3", {"n": "4"}, {"n": "3"}),
        ("n<3", {"n": "2"}, {"n": "x"}),
    ],
)
def test_label_selector_matches_like_kubernetes(
    selector: str, matching: dict[str, str], other: dict[str, str]
) -> None:
    parsed = parse_label_selector(selector)
    assert parsed.matches(matching)
    assert not parsed.matches(other)


@pytest.mark.parametrize(
    "bad", ["app=", "=x", "app in a", "app in (a", "a,", "Bad Key=x", "a=b c"]
)
def test_malformed_label_selectors_are_refused(bad: str) -> None:
    if bad == "app=":  # an empty value is valid
        assert parse_label_selector(bad).matches({"app": ""})
        return
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


@given(labels)
def test_equality_selector_built_from_labels_matches_them(
    given_labels: dict[str, str],
) -> None:
    text = ",".join(f"{k}={v}" for k, v in given_labels.items())
    assert parse_label_selector(text).matches(given_labels)


@given(labels, keys)
def test_exists_and_not_exists_are_complements(
    given_labels: dict[str, str], key: str
) -> None:
    exists = parse_label_selector(key).matches(given_labels)
    missing = parse_label_selector(f"!{key}").matches(given_labels)
    assert exists != missing
    assert exists == (key in given_labels)


@given(labels, keys, values)
def test_in_and_notin_are_complements(
    given_labels: dict[str, str], key: str, value: str
) -> None:
    if not value:
        return
    inside = parse_label_selector(f"{key} in ({value})").matches(given_labels)
    outside = parse_label_selector(f"{key} notin ({value})").matches(given_labels)
    assert inside != outside


@given(st.text(max_size=30))
def test_label_selector_parser_never_crashes(text: str) -> None:
    try:
        parse_label_selector(text)
    except SelectorError:
        pass


def test_unknown_field_selector_gives_the_real_message() -> None:
    with pytest.raises(SelectorError) as e:
        parse_field_selector("data.a=1", ["metadata.name", "metadata.namespace"])
    assert (
        str(e.value)
        == '"data.a" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


def test_field_selector_matches_name_and_extra_fields() -> None:
    selector = parse_field_selector(
        "metadata.name=a,type!=Opaque", ["metadata.name", "metadata.namespace", "type"]
    )
    secret = {"metadata": {"name": "a", "namespace": "n"}, "type": "kubernetes.io/tls"}
    assert selector.matches(object_fields(secret, ["type"]))
    assert not selector.matches(object_fields({**secret, "type": "Opaque"}, ["type"]))
