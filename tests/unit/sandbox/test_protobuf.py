"""
The Kubernetes protobuf body decoder: envelope, Go JSON semantics, special
types, malformed input (always ValueError), and fuzzing.

Bodies are built with the small independent writer below.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.sandbox import _protobuf_schema as schema
from clusternet.sandbox._protobuf import (
    PROTOBUF_MAGIC,
    UnsupportedKindError,
    _Decoder,
    _go_duration,
    decode_body,
)

# --- a tiny protobuf writer, independent of the decoder --------------------------

MAGIC = b"k8s\x00"


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def vint(number: int, value: int) -> bytes:
    """
    A varint field (int32/int64/bool/enum); negative values as 10 bytes.
    """
    return tag(number, 0) + varint(value)


def blob(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    return blob(number, value.encode("utf-8"))


def entry(number: int, key: bytes, value: bytes | None) -> bytes:
    """
    One map entry: key field 1 (already encoded payload), value field 2.
    """
    inner = blob(1, key) if value is None else blob(1, key) + value
    return blob(number, inner)


def envelope(api_version: str | None, kind: str | None, raw: bytes | None) -> bytes:
    """
    MAGIC + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
    """
    type_meta = b""
    if api_version is not None:
        type_meta += text(1, api_version)
    if kind is not None:
        type_meta += text(2, kind)
    out = blob(1, type_meta)
    if raw is not None:
        out += blob(2, raw)
    return MAGIC + out


def meta(name: str, namespace: str | None = None) -> bytes:
    """
    An ObjectMeta field (number 1) with a name and maybe a namespace.
    """
    inner = text(1, name)
    if namespace is not None:
        inner += text(3, namespace)
    return blob(1, inner)


def fixed64(number: int, value: int) -> bytes:
    return tag(number, 1) + (value & ((1 << 64) - 1)).to_bytes(8, "little")


def decode(api_version: str, kind: str, raw: bytes) -> dict[str, Any]:
    return decode_body(envelope(api_version, kind, raw), "", "", None)


def timestamp(seconds: int, nanos: int = 0) -> bytes:
    return vint(1, seconds) + (vint(2, nanos) if nanos else b"")


# Seconds from the Unix epoch to Go's zero time (0001-01-01T00:00:00Z).
ZERO_TIME = -62135596800


# --- the envelope ----------------------------------------------------------------


def test_namespace_decodes_like_its_json_with_struct_fields_written_empty() -> None:
    body = envelope("v1", "Namespace", meta("demo"))
    assert decode_body(body, "", "v1", "Namespace") == {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": "demo", "creationTimestamp": None},
        "spec": {},
        "status": {},
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty data"),
        (b"{}", "does not appear to be a protobuf message"),
        (b"k8s", "does not appear to be a protobuf message"),
        (PROTOBUF_MAGIC, "empty body"),
    ],
)
def test_bodies_without_an_envelope_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_body(data, "", "v1", "Namespace")


def test_envelope_without_type_meta_takes_the_endpoint_defaults() -> None:
    body = PROTOBUF_MAGIC + blob(2, meta("x"))
    obj = decode_body(body, "rbac.authorization.k8s.io", "v1", "ClusterRole")
    assert obj["kind"] == "ClusterRole"
    assert obj["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert obj["rules"] is None  # json:"rules" without omitempty: a nil slice


def test_envelope_type_meta_wins_over_the_endpoint() -> None:
    body = envelope("v1", "ConfigMap", meta("c"))
    obj = decode_body(body, "apps", "v1", "Deployment")
    assert (obj["apiVersion"], obj["kind"]) == ("v1", "ConfigMap")


def test_envelope_kind_without_version_takes_the_endpoint_version() -> None:
    obj = decode_body(envelope(None, "Lease", meta("l")), "coordination.k8s.io", "v1")
    assert obj["apiVersion"] == "coordination.k8s.io/v1"


def test_missing_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="Kind"):
        decode_body(envelope("v1", None, meta("x")), "", "v1", None)


def test_missing_version_is_rejected() -> None:
    with pytest.raises(ValueError, match="apiVersion"):
        decode_body(envelope(None, "Namespace", meta("x")), "", "", None)


def test_malformed_api_version_is_rejected() -> None:
    with pytest.raises(ValueError, match="GroupVersion"):
        decode_body(envelope("a/b/c", "Namespace", b""), "", "v1")


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("v1", "NoSuchKind"),
        ("v1", "ObjectMeta"),  # a message, but not a kind
        ("example.com/v1", "Widget"),  # a custom resource: JSON only
        ("v2", "Namespace"),
    ],
)
def test_kinds_without_schema_raise_unsupported_kind(
    api_version: str, kind: str
) -> None:
    with pytest.raises(UnsupportedKindError, match="no kind"):
        decode_body(envelope(api_version, kind, b""), "", "v1")
    assert issubclass(UnsupportedKindError, ValueError)


def test_missing_raw_decodes_the_zero_object() -> None:
    obj = decode_body(envelope("v1", "ServiceAccount", None), "", "v1")
    assert obj == {
        "kind": "ServiceAccount",
        "apiVersion": "v1",
        "metadata": {"creationTimestamp": None},
    }


def test_unknown_envelope_fields_and_content_type_are_ignored() -> None:
    body = (
        envelope("v1", "Namespace", meta("n")) + text(3, "") + text(4, "x") + vint(9, 1)
    )
    assert decode_body(body, "", "v1")["metadata"]["name"] == "n"


# --- Go JSON semantics -----------------------------------------------------------


def test_secret_bytes_are_base64_and_map_keys_sorted() -> None:
    raw = (
        meta("s", "default")
        + entry(2, b"z", blob(2, b"\x00\xff"))
        + entry(2, b"a", blob(2, b"hello"))
        + entry(2, b"empty", None)
        + entry(4, b"plain", text(2, "text"))
        + text(3, "Opaque")
    )
    obj = decode("v1", "Secret", raw)
    assert obj["data"] == {
        "a": base64.b64encode(b"hello").decode(),
        "empty": "",
        "z": base64.b64encode(b"\x00\xff").decode(),
    }
    assert list(obj["data"]) == ["a", "empty", "z"]
    assert obj["stringData"] == {"plain": "text"}
    assert obj["type"] == "Opaque"
    assert "immutable" not in obj


def test_configmap_binary_data_and_immutable_pointer() -> None:
    raw = meta("c") + vint(4, 0) + entry(3, b"bin", blob(2, b"\x01\x02"))
    obj = decode("v1", "ConfigMap", raw)
    # A *bool that was sent is written even when false.
    assert obj["immutable"] is False
    assert obj["binaryData"] == {"bin": "AQI="}
    assert "data" not in obj


def test_pointer_scalars_keep_zero_and_plain_omitempty_scalars_drop_it() -> None:
    spec = vint(1, 0) + vint(5, 0) + vint(7, 0)  # replicas, minReadySeconds, paused
    obj = decode("apps/v1", "Deployment", meta("d") + blob(2, spec))
    assert obj["spec"]["replicas"] == 0
    assert "minReadySeconds" not in obj["spec"]
    assert "paused" not in obj["spec"]
    assert obj["spec"]["template"] == {
        "metadata": {"creationTimestamp": None},
        "spec": {"containers": None},
    }
    assert obj["spec"]["strategy"] == {}
    assert obj["status"] == {}


def test_non_omitempty_bool_is_written_false() -> None:
    attrs = text(1, "default") + text(2, "get") + text(5, "pods")
    raw = blob(2, blob(1, attrs))
    obj = decode("authorization.k8s.io/v1", "SelfSubjectAccessReview", raw)
    assert obj["spec"] == {
        "resourceAttributes": {
            "namespace": "default",
            "verb": "get",
            "resource": "pods",
        }
    }
    assert obj["status"] == {"allowed": False}


def test_int32_and_int64_are_signed_and_truncated_like_go() -> None:
    # terminationGracePeriodSeconds (4) and activeDeadlineSeconds (5)
    spec = vint(4, -5) + vint(5, (1 << 40) + 7)
    obj = decode("v1", "Pod", meta("p") + blob(2, spec))
    assert obj["spec"]["terminationGracePeriodSeconds"] == -5
    assert obj["spec"]["activeDeadlineSeconds"] == (1 << 40) + 7
    service = blob(2, blob(1, vint(3, (1 << 32) + 80)))  # spec.ports[0].port
    assert decode("v1", "Service", service)["spec"]["ports"][0]["port"] == 80


def test_repeated_scalars_accept_packed_and_unpacked() -> None:
    packed = blob(4, varint(1) + varint(2) + varint(3))
    unpacked = vint(4, 4) + vint(4, 5)
    spec = blob(14, packed + unpacked)  # securityContext.supplementalGroups
    obj = decode("v1", "Pod", blob(2, spec))
    assert obj["spec"]["securityContext"]["supplementalGroups"] == [1, 2, 3, 4, 5]


def test_inline_struct_fields_are_merged_into_the_parent() -> None:
    volume = text(1, "scratch") + blob(2, blob(2, text(1, "Memory")))
    obj = decode("v1", "Pod", blob(2, blob(1, volume)))
    assert obj["spec"]["volumes"] == [
        {"name": "scratch", "emptyDir": {"medium": "Memory"}}
    ]


def test_parent_fields_win_over_inlined_fields_of_the_same_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    Go's encoding/json rule for embedded structs; no v1.32 type has such a
    clash, so the schema here is made up.
    """
    monkeypatch.setitem(
        schema.MESSAGES, "test.v1.Inner", "1,name,0,string;2,extra,0,string"
    )
    monkeypatch.setitem(
        schema.MESSAGES, "test.v1.InlineFirst", "2,,16,test.v1.Inner;1,name,0,string"
    )
    monkeypatch.setitem(
        schema.MESSAGES, "test.v1.InlineLast", "1,name,0,string;2,,16,test.v1.Inner"
    )
    raw = text(1, "outer") + blob(2, text(1, "inner") + text(2, "x"))
    for name in ("test.v1.InlineFirst", "test.v1.InlineLast"):
        assert _Decoder(0).message([raw], name) == {"name": "outer", "extra": "x"}


def test_json_name_comes_from_the_go_tag_not_the_proto_name() -> None:
    ref = text(1, "Pod") + text(3, "p") + text(4, "1234")  # proto "uID"
    raw = blob(2, text(1, "api") + blob(3, ref))
    obj = decode("authentication.k8s.io/v1", "TokenRequest", raw)
    assert obj["spec"]["boundObjectRef"] == {"kind": "Pod", "name": "p", "uid": "1234"}
    assert obj["spec"]["audiences"] == ["api"]
    assert obj["spec"]["expirationSeconds"] is None
    assert obj["status"] == {"token": "", "expirationTimestamp": None}


def test_extra_values_are_lists_and_an_empty_one_is_an_empty_list() -> None:
    spec = (
        text(3, "alice")
        + text(4, "devs")
        + entry(5, b"scopes", blob(2, text(1, "a") + text(1, "b")))
        + entry(5, b"none", blob(2, b""))
    )
    obj = decode("authorization.k8s.io/v1", "SubjectAccessReview", blob(2, spec))
    assert obj["spec"] == {
        "user": "alice",
        "groups": ["devs"],
        "extra": {"none": [], "scopes": ["a", "b"]},
    }


def test_verbs_wrapper_field_is_a_list_or_null() -> None:
    resource = (
        text(1, "pods") + text(3, "Pod") + blob(4, text(1, "get") + text(1, "list"))
    )
    raw = text(1, "v1") + blob(2, resource) + blob(2, text(1, "x"))
    obj = decode("meta.k8s.io/v1", "APIResourceList", raw)
    assert obj["resources"][0]["verbs"] == ["get", "list"]
    assert obj["resources"][1]["verbs"] is None


def test_repeated_messages_merge_and_scalars_keep_the_last_value() -> None:
    raw = blob(1, text(1, "first") + text(3, "ns")) + blob(1, text(1, "second"))
    obj = decode("v1", "ConfigMap", raw)
    assert obj["metadata"]["name"] == "second"
    assert obj["metadata"]["namespace"] == "ns"


def test_invalid_utf8_in_strings_becomes_replacement_characters() -> None:
    obj = decode("v1", "ConfigMap", blob(1, blob(1, b"a\xffb")))
    assert obj["metadata"]["name"] == "a\ufffdb"


def test_unknown_fields_are_skipped_including_groups_and_fixed_widths() -> None:
    junk = (
        vint(99, 5)
        + fixed64(98, 1)
        + tag(97, 5)
        + b"\x00\x00\x00\x00"
        + blob(96, b"xx")
        + tag(95, 3)
        + vint(1, 1)
        + tag(94, 3)
        + tag(94, 4)
        + tag(95, 4)
    )
    assert decode("v1", "ConfigMap", junk + meta("c"))["metadata"]["name"] == "c"


# --- special types ---------------------------------------------------------------


def managed(time: bytes, fields: bytes | None = None) -> dict[str, Any]:
    entry_ = text(1, "kubectl") + blob(4, time)
    if fields is not None:
        entry_ += blob(7, blob(1, fields))
    obj = decode("v1", "ConfigMap", blob(1, text(1, "c") + blob(17, entry_)))
    result: dict[str, Any] = obj["metadata"]["managedFields"][0]
    return result


@pytest.mark.parametrize(
    ("seconds", "nanos", "want"),
    [
        (0, 0, "1970-01-01T00:00:00Z"),
        (1700000000, 999_999_999, "2023-11-14T22:13:20Z"),  # nanos are dropped
        (-1, 0, "1969-12-31T23:59:59Z"),
        (253402300799, 0, "9999-12-31T23:59:59Z"),
        (253402300800, 0, "10000-01-01T00:00:00Z"),
        (ZERO_TIME + 1, 0, "0001-01-01T00:00:01Z"),
        (ZERO_TIME - 86400 * 366, 0, "0000-01-01T00:00:00Z"),
        (ZERO_TIME - 86400 * 367, 0, "-0001-12-31T00:00:00Z"),
        (951782400, 0, "2000-02-29T00:00:00Z"),
    ],
)
def test_time_is_rfc3339_seconds_in_utc(seconds: int, nanos: int, want: str) -> None:
    assert managed(timestamp(seconds, nanos))["time"] == want


def test_time_zero_or_empty_is_null() -> None:
    assert managed(b"")["time"] is None
    assert managed(timestamp(ZERO_TIME))["time"] is None


def test_time_out_of_go_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="out of range"):
        managed(vint(1, (1 << 63) - 1))


def test_micro_time_has_six_digits_and_truncates_toward_zero() -> None:
    spec = blob(3, timestamp(1700000000, 123_456_789)) + blob(4, timestamp(5, -1500))
    obj = decode("coordination.k8s.io/v1", "Lease", meta("l") + blob(2, spec))
    assert obj["spec"]["acquireTime"] == "2023-11-14T22:13:20.123456Z"
    # -1500ns truncates to -1µs: 4.999999 s after the epoch.
    assert obj["spec"]["renewTime"] == "1970-01-01T00:00:04.999999Z"
    assert "holderIdentity" not in obj["spec"]


def test_fields_v1_is_embedded_json_and_must_be_json() -> None:
    fields = managed(timestamp(0), b'{"f:data":{".":{}}}')
    assert fields["fieldsV1"] == {"f:data": {".": {}}}
    with pytest.raises(ValueError, match="JSON"):
        managed(timestamp(0), b"{not json")
    with pytest.raises(ValueError, match="JSON"):
        managed(timestamp(0), b"NaN")


def test_raw_extension_holds_json_or_a_nested_protobuf_object() -> None:
    as_json = decode("apps/v1", "ControllerRevision", blob(2, blob(1, b'{"a":[1]}')))
    assert as_json["data"] == {"a": [1]}
    assert as_json["revision"] == 0
    nested = envelope("v1", "ConfigMap", meta("inner"))
    as_pb = decode("apps/v1", "ControllerRevision", blob(2, blob(1, nested)))
    assert as_pb["data"]["kind"] == "ConfigMap"
    assert as_pb["data"]["metadata"]["name"] == "inner"
    assert decode("apps/v1", "ControllerRevision", b"")["data"] is None


def test_deeply_nested_raw_extensions_raise_value_error() -> None:
    body = envelope("v1", "ConfigMap", meta("leaf"))
    for _ in range(150):
        body = envelope("apps/v1", "ControllerRevision", blob(2, blob(1, body)))
    with pytest.raises(ValueError, match="nested too deeply"):
        decode_body(body, "", "")


def test_int_or_string_is_a_number_or_a_string() -> None:
    def port(value: bytes) -> object:
        obj = decode("v1", "Service", blob(2, blob(1, vint(3, 80) + blob(4, value))))
        return obj["spec"]["ports"][0]["targetPort"]

    assert port(vint(1, 0) + vint(2, 8080)) == 8080
    assert port(vint(1, 1) + text(3, "http")) == "http"
    assert port(b"") == 0
    with pytest.raises(ValueError, match="IntOrString"):
        port(vint(1, 2))


def test_quantities_are_checked_and_passed_through() -> None:
    def hard(quantities: dict[str, bytes | None]) -> object:
        raw = meta("q") + blob(
            2, b"".join(entry(1, k.encode(), v) for k, v in quantities.items())
        )
        return decode("v1", "ResourceQuota", raw)["spec"]["hard"]

    good = {"cpu": "100m", "memory": "1Gi", "pods": "10", "big": "1e3", "neg": "-1.5"}
    assert hard({k: blob(2, text(1, v)) for k, v in good.items()}) == dict(
        sorted(good.items())
    )
    # A map value without its Quantity is Go's zero Quantity.
    assert hard({"cpu": None}) == {"cpu": "0"}
    for bad in ("", "abc", "1Qi", "1e", "--1", "1.2.3"):
        with pytest.raises(ValueError, match="quantities"):
            hard({"cpu": blob(2, text(1, bad))})


@pytest.mark.parametrize(
    ("nanos", "want"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_100, "1.1\u00b5s"),
        (2_200_000, "2.2ms"),
        (1_500_000_000, "1.5s"),
        (3_600_000_000_000, "1h0m0s"),
        (4_530_918_273_645, "1h15m30.918273645s"),
        (-90_000_000_000, "-1m30s"),
        (-(1 << 63), "-2562047h47m16.854775808s"),
    ],
)
def test_durations_format_like_go(nanos: int, want: str) -> None:
    assert _go_duration(nanos) == want


# --- malformed input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (blob(1, b"\x0a\x05ab"), "unexpected end"),  # truncated string
        (b"\x0a", "unexpected end"),  # tag without length
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "negative length"),
        (b"\x0a" + b"\xff" * 10 + b"\x01", "integer overflow"),
        (b"\x00\x01", "illegal tag 0"),
        (b"\x0c", "end group"),
        (vint(1, 5), "wrong wireType"),  # metadata sent as a varint
        (tag(2, 7), "wrong wireType"),
        (tag(50, 6), "illegal wireType"),
        (tag(50, 4), "end group"),
        (tag(50, 3) + vint(1, 1), "unexpected end"),  # unterminated group
        (blob(2, vint(1, 1)), "wrong wireType"),  # map entry key as varint
    ],
)
def test_malformed_messages_raise_value_error(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode("v1", "ConfigMap", raw)


# --- the schema ------------------------------------------------------------------


def test_schema_covers_the_kinds_kubectl_writes() -> None:
    wanted = {
        "v1": "Namespace ServiceAccount Secret ConfigMap Service Pod",
        "authorization.k8s.io/v1": (
            "SelfSubjectAccessReview SubjectAccessReview SelfSubjectRulesReview"
        ),
        "authentication.k8s.io/v1": "TokenRequest TokenReview SelfSubjectReview",
        "rbac.authorization.k8s.io/v1": (
            "Role ClusterRole RoleBinding ClusterRoleBinding"
        ),
        "coordination.k8s.io/v1": "Lease",
        "apps/v1": "Deployment",
    }
    for api_version, kinds in wanted.items():
        prefix = schema.GROUP_VERSIONS[api_version]
        for kind in kinds.split():
            assert kind in schema.KINDS[prefix].split()
            assert f"{prefix}.{kind}" in schema.MESSAGES
            obj = decode_body(envelope(api_version, kind, b""), "", "")
            assert (obj["apiVersion"], obj["kind"]) == (api_version, kind)


def test_every_kind_in_the_schema_decodes_its_zero_value() -> None:
    count = 0
    for api_version, prefix in schema.GROUP_VERSIONS.items():
        for kind in schema.KINDS[prefix].split():
            obj = decode_body(envelope(api_version, kind, b""), "", "")
            assert obj["kind"] == kind
            count += 1
    assert count > 300


def test_every_field_type_in_the_schema_exists() -> None:
    scalars = {"string", "bytes", "bool", "int32", "int64", "double", "float"}
    scalars |= {"uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64"}
    scalars |= {"sfixed32", "sfixed64"}
    for name, spec in schema.MESSAGES.items():
        for field in filter(None, spec.split(";")):
            for type_ in field.split(",")[3:]:
                assert type_ in scalars or type_ in schema.MESSAGES, (name, field)


# --- property tests --------------------------------------------------------------


@given(st.binary(max_size=512))
def test_any_bytes_decode_to_a_dict_or_raise_value_error(data: bytes) -> None:
    for body in (data, PROTOBUF_MAGIC + data):
        try:
            result = decode_body(body, "", "v1", "Pod")
        except ValueError:
            continue
        assert isinstance(result, dict)


FUZZ_KINDS = [
    ("v1", "Pod"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ControllerRevision"),
    ("authorization.k8s.io/v1", "SubjectAccessReview"),
    ("coordination.k8s.io/v1", "Lease"),
    ("v1", "ResourceQuota"),
]


def _fields(depth: int) -> st.SearchStrategy[bytes]:
    """
    Random but well-framed protobuf: small field numbers and every wire type,
    nested, so the decoder reaches deep into real schemas.
    """
    number = st.integers(min_value=1, max_value=20)
    leaf = st.one_of(
        st.builds(
            vint, number, st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
        ),
        st.builds(blob, number, st.binary(max_size=12)),
        st.builds(fixed64, number, st.integers(min_value=0, max_value=(1 << 64) - 1)),
        st.builds(
            lambda n, v: tag(n, 5) + v, number, st.binary(min_size=4, max_size=4)
        ),
    )
    if depth == 0:
        return st.lists(leaf, max_size=4).map(b"".join)
    nested = st.builds(blob, number, st.deferred(lambda: _fields(depth - 1)))
    return st.lists(st.one_of(leaf, nested), max_size=5).map(b"".join)


@given(st.sampled_from(FUZZ_KINDS), _fields(4))
def test_well_framed_random_objects_decode_or_raise_value_error(
    kind: tuple[str, str], raw: bytes
) -> None:
    try:
        result = decode(kind[0], kind[1], raw)
    except ValueError:
        return
    assert result["kind"] == kind[1]


_keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)


@given(
    st.text(max_size=20),
    st.dictionaries(_keys, st.text(max_size=20), max_size=5),
    st.dictionaries(_keys, st.binary(max_size=20), max_size=5),
    st.one_of(st.none(), st.booleans()),
)
def test_configmaps_decode_to_their_json(
    name: str, data: dict[str, str], binary: dict[str, bytes], immutable: bool | None
) -> None:
    raw = blob(1, text(1, name))
    if immutable is not None:
        raw += vint(4, int(immutable))
    for key, value in data.items():
        raw += entry(2, key.encode(), text(2, value))
    for key, blob_value in binary.items():
        raw += entry(3, key.encode(), blob(2, blob_value))
    want: dict[str, Any] = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"creationTimestamp": None},
    }
    if name:
        want["metadata"] = {"name": name, "creationTimestamp": None}
    if immutable is not None:
        want["immutable"] = immutable
    if data:
        want["data"] = dict(sorted(data.items()))
    if binary:
        want["binaryData"] = {
            k: base64.b64encode(v).decode() for k, v in sorted(binary.items())
        }
    assert decode("v1", "ConfigMap", raw) == want


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_int64_fields_round_trip_through_varints(value: int) -> None:
    spec = vint(5, value)  # activeDeadlineSeconds, *int64
    assert decode("v1", "Pod", blob(2, spec))["spec"]["activeDeadlineSeconds"] == value


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_durations_match_a_reference_formatter(nanos: int) -> None:
    """
    Cross-check Go's Duration.String() port against a straightforward
    formatter built from divmod.
    """
    sign = "-" if nanos < 0 else ""
    value = abs(nanos)
    if value == 0:
        want = "0s"
    elif value < 1_000_000_000:
        for unit, size in (("ns", 1), ("\u00b5s", 1_000), ("ms", 1_000_000)):
            if value < size * 1000:
                whole, frac = divmod(value, size)
                digits = len(str(size)) - 1
                frac_text = f"{frac:0{digits}d}".rstrip("0") if digits else ""
                want = f"{sign}{whole}{'.' + frac_text if frac_text else ''}{unit}"
                break
    else:
        seconds, frac = divmod(value, 1_000_000_000)
        frac_text = f"{frac:09d}".rstrip("0")
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        tail = f"{secs}{'.' + frac_text if frac_text else ''}s"
        if hours:
            want = f"{sign}{hours}h{minutes}m{tail}"
        elif minutes:
            want = f"{sign}{minutes}m{tail}"
        else:
            want = f"{sign}{tail}"
    assert _go_duration(nanos) == want


def test_float_helper_is_not_needed_by_the_schema() -> None:
    """
    No v1.32 type has float fields; if one appears, the decoder's float32
    path (shortest round-trip form) needs a real fixture.
    """
    for spec in schema.MESSAGES.values():
        assert ",float" not in spec
        assert ",double" not in spec
    assert struct.calcsize("<f") == 4
