"""Lease tables (a real SQLite file, DynamoDB on the real moto server) and the lease taker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy_modes.core.storage import aws_client
from deploy_modes.launch.emulator import Emulator
from deploy_modes.stream.leases import (
    SHARD_END,
    DynamoLeases,
    Lease,
    LeaseTable,
    LeaseTaker,
    SQLiteLeases,
)


def _sqlite(tmp_path: Path) -> Callable[[], LeaseTable]:
    return lambda: SQLiteLeases(tmp_path / "leases.sqlite", "group", "ride_events")


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.integration)])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], LeaseTable]:
    """Return a factory of handles on one lease table (as separate consumers would open it)."""
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    emulator: Emulator = request.getfixturevalue("moto_server")
    table = f"leases_{uuid.uuid4().hex[:8]}"
    return lambda: DynamoLeases(aws_client("dynamodb", emulator.url), table, "group", "ride_events")


def test_only_one_of_two_consumers_takes_a_lease(tables: Callable[[], LeaseTable]) -> None:
    first, second = tables(), tables()
    first.create("shard-0", (), "s@1")
    second.create("shard-0", (), "s@1")  # idempotent: the lease is not reset
    (seen,) = first.list()
    assert seen == Lease("shard-0", incarnation="s@1")
    assert first.write(seen, LeaseTaker.taken(seen, "a"))
    assert not second.write(seen, LeaseTaker.taken(seen, "b"))  # b saw an old version
    (now,) = second.list()
    assert (now.owner, now.counter) == ("a", 1)


def test_renew_checkpoint_release_and_a_lost_lease(tables: Callable[[], LeaseTable]) -> None:
    table = tables()
    table.create("shard-1", ("shard-0",), "s@1")
    (lease,) = table.list()
    assert lease.parents == ("shard-0",)
    held = LeaseTaker.taken(lease, "a")
    assert table.write(lease, held)
    renewed = Lease("shard-1", "a", 2, "17", ("shard-0",))
    assert table.write(held, renewed)
    stolen = Lease("shard-1", "b", 3, "17", ("shard-0",))
    assert table.write(renewed, stolen)
    # a's next renewal fails: it lost the lease and must drop the shard.
    assert not table.write(renewed, Lease("shard-1", "a", 3, "20", ("shard-0",)))
    released = Lease("shard-1", None, 4, SHARD_END, ("shard-0",))
    assert table.write(stolen, released)
    (final,) = table.list()
    assert final == released and final.finished


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _leases(owners: list[str | None], counter: int = 1) -> list[Lease]:
    return [Lease(f"shard-{i}", owner, counter) for i, owner in enumerate(owners)]


def test_a_new_consumer_takes_free_leases_up_to_its_share() -> None:
    taker = LeaseTaker("c", 10.0, Clock())
    taken = taker.to_take(_leases(["a", "a", None, None], 0))
    assert [lease.shard_id for lease in taken] == ["shard-2", "shard-3"]  # share of 4 / 2


def test_an_expired_lease_is_taken_after_the_timeout_on_the_takers_clock() -> None:
    clock = Clock()
    taker = LeaseTaker("c", 10.0, clock)

    def at(now: float, a: int, b: int) -> list[str]:
        clock.now = now
        leases = [Lease("shard-0", "a", a), Lease("shard-1", "a", a)]
        leases += [Lease("shard-2", "b", b), Lease("shard-3", "c", 1)]
        return [lease.shard_id for lease in taker.to_take(leases)]

    assert at(0.0, 1, 1) == []  # 2, 1, 1: balanced
    assert at(5.0, 2, 2) == []  # both renewed
    assert at(12.0, 2, 3) == []  # only b renewed
    assert at(14.9, 2, 3) == []  # a's counters have not moved for 9.9 s
    # a expired: its two shards are free; c takes its share (ceil(4 / 2 alive) - 1 held).
    assert at(15.0, 2, 3) == ["shard-0"]


def test_balance_steals_one_lease_at_a_time() -> None:
    taker = LeaseTaker("c", 10.0, Clock())
    leases = _leases(["a", "a", "b", "b"])
    (stolen,) = taker.to_take(leases)  # 2, 2, 0 -> take one from a busiest owner
    assert stolen.owner in {"a", "b"}
    assert taker.to_take(_leases(["a", "c", "b", "b"])) == []  # 1, 2, 1: balanced


def test_a_child_shard_waits_for_its_parents_to_finish() -> None:
    taker = LeaseTaker("c", 10.0, Clock())
    parent = Lease("shard-0", "a", 1, "55")
    children = [
        Lease("shard-1", None, 0, None, ("shard-0",)),
        Lease("shard-2", parents=("shard-0",)),
    ]
    assert taker.to_take([parent, *children]) == []
    done = Lease("shard-0", None, 2, SHARD_END)
    assert [lease.shard_id for lease in taker.to_take([done, *children])] == [
        "shard-1",
        "shard-2",
    ]
    # A parent trimmed away (no lease any more) does not block its children either.
    assert len(taker.to_take(children)) == 2


def test_dynamodb_lease_table_that_cannot_be_created_is_a_clear_error() -> None:
    from deploy_modes.core.errors import DeployError
    from deploy_modes.launch.processes import free_port
    from deploy_modes.stream.kinesis import client_config

    client: Any = aws_client("dynamodb", f"http://127.0.0.1:{free_port()}", config=client_config())
    with pytest.raises(DeployError, match="cannot create lease table"):
        DynamoLeases(client, "leases", "group", "ride_events")
