"""Queue limit options as values: periods, rate limits, partitions."""

from __future__ import annotations

import pytest

from jobrunner import ConfigError
from jobrunner.core.limits import Limits, Partition, RateLimit, parse_period


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (60, 60.0),
        (0.5, 0.5),
        ("60s", 60.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86_400.0),
        ("90", 90.0),
        (" 2.5s ", 2.5),
    ],
)
def test_periods_parse_to_seconds(raw: object, seconds: float) -> None:
    assert parse_period(raw) == seconds


@pytest.mark.parametrize("raw", [0, -1, "0s", "soon", "5 minutes", "", None, True, float("inf")])
def test_bad_periods_are_refused(raw: object) -> None:
    with pytest.raises(ConfigError, match="period must be a duration > 0"):
        parse_period(raw)


def test_rate_limits_from_a_table_or_the_flag_form() -> None:
    assert RateLimit.parse({"allowed": 100, "period": "60s"}) == RateLimit(100, 60.0)
    assert RateLimit.parse("100/1m") == RateLimit(100, 60.0)
    with pytest.raises(ConfigError, match="rate_limit has unknown options"):
        RateLimit.parse({"allowed": 1, "period": 1, "burst": 2})


def test_partitions_take_fields_and_keys() -> None:
    assert Partition.parse({"keys": ["customer_id"]}) == Partition((), ("customer_id",))
    assert Partition.parse({"fields": ["worker"], "keys": ["a"]}) == Partition(("worker",), ("a",))
    for bad in ({}, {"keys": []}, {"keys": "customer_id"}, {"columns": ["x"]}, ["customer_id"]):
        with pytest.raises(ConfigError, match="partition"):
            Partition.parse(bad)


def test_limits_are_on_when_any_option_is() -> None:
    assert not Limits()
    assert Limits(global_limit=1) and Limits(rate_limit=RateLimit(1, 1.0))
    assert Limits(partition=Partition((), ("k",)))


def test_partitions_take_at_most_eight_keys_and_name_their_values() -> None:
    with pytest.raises(ConfigError, match="at most 8 keys, got 9"):
        Partition.parse({"keys": [f"k{i}" for i in range(9)]})
    partition = Partition(("worker",), ("customer_id", "region"))
    values = ["app.imp", None, 42, None, None, None, None, None, None, None]
    assert partition.name(values) == {"worker": "app.imp", "customer_id": 42, "region": None}
    assert Partition(("args",), ()).name([None, {"a": 1}]) == {"args": {"a": 1}}
