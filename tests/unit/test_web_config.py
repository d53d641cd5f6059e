"""The dashboard's listen address and credentials, and its job filter, without a database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from jobrunner.core.errors import ConfigError
from jobrunner.core.job_filter import JobFilter
from jobrunner.web import data, live, serve


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:9", ("::1", 9)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_listen_addresses(listen, expected):
    assert serve.parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["8080", "host:", ":80", "h:0", "h:65536", "h:x"])
def test_bad_listen_addresses(listen):
    with pytest.raises(ConfigError, match="listen address must be HOST:PORT"):
        serve.parse_listen(listen)


def test_only_loopback_counts_as_private():
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1")
    assert serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("example.com")


def test_credentials_from_flags_and_environment(monkeypatch):
    monkeypatch.delenv(serve.AUTH_ENV, raising=False)
    monkeypatch.setenv(serve.TOKEN_ENV, "tok")
    assert serve.credentials("u:p") == ("u:p", "tok")
    monkeypatch.setenv(serve.AUTH_ENV, "env:pw")
    monkeypatch.delenv(serve.TOKEN_ENV)
    assert serve.credentials(None) == ("env:pw", None)
    with pytest.raises(ConfigError, match="USER:PASSWORD"):
        serve.credentials(":nouser")


def test_a_filter_round_trips_through_its_query_string():
    query = {"queue": "mail", "args": '{"a": {"b": 1}}', "from": "2026-01-02T03:04:05"}
    where = data.parse_filter(query, ["discarded", "retryable"])
    assert isinstance(where, JobFilter)  # the one filter of the client, the CLI and the pages
    assert where.args == {"a": {"b": 1}} and where.args_text is None
    assert where.inserted_after == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    pairs = data.filter_query(where)
    again = {k: v for k, v in pairs if k != "state"}
    assert data.parse_filter(again, [v for k, v in pairs if k == "state"]) == where


def test_text_args_and_a_tag_map_onto_the_shared_filter():
    where = data.parse_filter({"args": "alice", "tag": "vip"}, [])
    assert where == JobFilter.build(args_text="alice", tags=["vip"])
    assert data.parse_filter({}, []).empty


@pytest.mark.parametrize(
    ("query", "states", "message"),
    [
        ({}, ["done"], "unknown job state 'done'"),
        ({"args": "{oops"}, [], "is not a JSON object"),
        ({"args": "{}x"}, [], "is not a JSON object"),
        ({"to": "soon"}, [], "to 'soon' is not a date"),
    ],
)
def test_bad_filters_say_what_is_wrong(query, states, message):
    with pytest.raises(data.BadFilter, match=message):
        data.parse_filter(query, states)


async def test_viewers_of_one_fragment_share_one_render_per_interval():
    cache = live.FragmentCache(ttl_s=60)
    renders = 0

    async def render() -> str:
        nonlocal renders
        renders += 1
        await asyncio.sleep(0)  # viewers arriving meanwhile wait for this one
        return f"<p>{renders}</p>"

    key = ("_jobs.html", "/partial/jobs", "", "True")
    shown = await asyncio.gather(*(cache.get(key, render) for _ in range(10)))
    assert shown == ["<p>1</p>"] * 10 and renders == 1
    assert await cache.get(("_jobs.html", "/partial/jobs", "state=discarded", "True"), render)
    assert renders == 2  # another filter is another fragment
    cache.clear()  # an action: the next poll shows its effect
    assert await cache.get(key, render) == "<p>3</p>"
