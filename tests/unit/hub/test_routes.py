"""
Parsing the hub's URL space.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.hub._routes import GROUP_PREFIX, Route, RouteError, parse_route

ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
S = GROUP_PREFIX + "/sockets"


@pytest.mark.parametrize(
    ("path", "route"),
    [
        (GROUP_PREFIX, Route("group")),
        (GROUP_PREFIX + "/", Route("group")),
        (S, Route("list")),
        (S + "/", Route("list")),
        (f"{S}/{ID}", Route("socket", ID)),
        (f"{S}/{ID}/", Route("socket", ID)),
        (
            f"{S}/{ID}/proxy/direct/api/v1/pods",
            Route("proxy", ID, "direct", "", "/api/v1/pods"),
        ),
        (f"{S}/{ID}/proxy/direct", Route("proxy", ID, "direct", "", "/")),
        (
            f"{S}/{ID}/proxy/https/10.0.0.1:6443/api",
            Route("proxy", ID, "https", "10.0.0.1:6443", "/api"),
        ),
        (
            f"{S}/{ID}/proxy/http/localhost:8001/",
            Route("proxy", ID, "http", "localhost:8001", "/"),
        ),
        (
            f"{S}/{ID}/https/kubernetes.default/version",
            Route("proxy", ID, "https", "kubernetes.default", "/version"),
        ),
        (
            f"{S}/{ID}/proxy/https/[::1]:6443/x/y",
            Route("proxy", ID, "https", "[::1]:6443", "/x/y"),
        ),
    ],
)
def test_parses_every_documented_form(path: str, route: Route) -> None:
    assert parse_route(path) == route


@pytest.mark.parametrize(
    "path", ["/api/v1", "/apis/other/v1", "/apis/proxies.clusternet.io/v1beta1", "/"]
)
def test_paths_outside_the_group_are_not_ours(path: str) -> None:
    assert parse_route(path) is None


@pytest.mark.parametrize(
    "path",
    [
        f"{GROUP_PREFIX}/pods",
        f"{S}/UPPER",
        f"{S}/../etc",
        f"{S}/{ID}/proxy/ftp/host/",
        f"{S}/{ID}/proxy/https/bad_host/",
        f"{S}/{ID}/proxy/https/host:99999/",
        f"{S}/{ID}/proxy/https//x",
        f"{S}/{ID}/gopher/host/",
    ],
)
def test_malformed_paths_are_refused_with_a_reason(path: str) -> None:
    with pytest.raises(RouteError):
        parse_route(path)


@given(st.text(max_size=120))
def test_any_path_parses_refuses_or_is_not_ours(tail: str) -> None:
    try:
        route = parse_route(S + "/" + tail)
    except RouteError:
        return
    assert route is not None
    if route.kind == "proxy":
        assert route.path.startswith("/")
        assert ".." not in route.cluster_id


@given(
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,10}){0,2}", fullmatch=True),
    st.integers(min_value=1, max_value=65535),
    st.from_regex(r"(/[A-Za-z0-9_.~-]{1,8}){0,4}", fullmatch=True),
)
def test_generated_proxy_paths_round_trip(
    scheme: str, host: str, port: int, path: str
) -> None:
    target = f"{host}:{port}"
    route = parse_route(f"{S}/{ID}/proxy/{scheme}/{target}{path}")
    assert route == Route("proxy", ID, scheme, target, path or "/")
