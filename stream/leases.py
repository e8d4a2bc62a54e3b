"""Shard leases for a consumer group, the way the Kinesis Client Library keeps them.

One lease per (group, stream, shard) holds the owner, a counter, the checkpoint (``SHARD_END``
once a closed shard was read to its end) and the stream incarnation it belongs to: a stream
deleted and created again reuses the shard ids, and its shards must not inherit the old
leases (a ``SHARD_END`` there would skip a whole new shard). Every
write is conditional on what the writer last saw (the owner and the counter), so two
consumers can never both believe they hold a shard: the loser's write fails and it drops
the shard. A lease whose counter has not moved for ``lease_timeout`` (measured on the
observer's own clock, so hosts need no synchronised clocks) is expired and may be taken.

Two tables: :class:`SQLiteLeases` (every consumer on one host) and :class:`DynamoLeases`
(conditional writes, consumers on many hosts). :class:`LeaseTaker` decides, from one
listing, which leases to take: expired or free ones first, then one stolen at a time from
the busiest owner until each consumer holds about shards/consumers.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from deploy_modes.core.errors import DeployError
from deploy_modes.core.storage import aws_error_code

__all__ = [
    "SHARD_END",
    "DynamoLeases",
    "Lease",
    "LeaseCoordinator",
    "LeaseTable",
    "LeaseTaker",
    "SQLiteLeases",
    "StoredLease",
    "fast_commits",
    "read_dynamo_leases",
    "read_sqlite_leases",
]

SHARD_END = "SHARD_END"  # the checkpoint of a shard closed by a reshard and read to its end
_KEY_SEPARATOR = "|"  # DynamoDB lease keys are group|stream|shard
# Columns added after the first release; an older lease file gets them with empty values.
_ADDED_COLUMNS = {"incarnation": "text not null default ''", "updated": "real not null default 0"}


@dataclass(frozen=True)
class Lease:
    """One shard's lease: who holds it, how often it was written, and its checkpoint."""

    shard_id: str
    owner: str | None = None
    counter: int = 0
    checkpoint: str | None = None
    parents: tuple[str, ...] = ()
    incarnation: str = ""  # the stream incarnation (ARN@creation time) the lease belongs to
    # Wall-clock time of the last write, for `deploy status` only: expiry never compares clocks.
    updated: float = field(default=0.0, compare=False)

    @property
    def finished(self) -> bool:
        """Return whether the shard was read to its end (its children may start)."""
        return self.checkpoint == SHARD_END


def fast_commits(db: sqlite3.Connection) -> None:
    """Commit to the write-ahead log without an fsync per transaction (WAL, synchronous=NORMAL).

    A commit then survives the process being killed (the guarantee the consumer needs); only
    an OS crash or power loss may lose the last commits, and a lost checkpoint or lease write
    means rides read again, never skipped. The default (rollback journal, FULL) costs two or
    more fsyncs per commit: 35 ms each on a loaded disk, several per consumer round.
    """
    db.execute("pragma journal_mode=wal")
    db.execute("pragma synchronous=normal")


@dataclass(frozen=True)
class StoredLease:
    """A lease as a table holds it, with the group and stream it belongs to (for status)."""

    group: str
    stream: str
    lease: Lease


def read_sqlite_leases(path: Path | str) -> list[StoredLease]:
    """Return every lease in a SQLite lease file (read-only; none when the file is absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            have = {row[1] for row in db.execute("pragma table_info(leases)")}
            if not have:
                return []
            extra = ", ".join(c if c in have else "null" for c in _ADDED_COLUMNS)
            rows = db.execute(
                f"select grp, stream, shard_id, owner, counter, checkpoint, parents, {extra} "
                "from leases order by grp, stream, shard_id"
            ).fetchall()
    except sqlite3.Error as exc:
        raise DeployError(f"cannot read the lease file {path}: {exc}") from exc
    return [
        StoredLease(
            r[0],
            r[1],
            Lease(
                r[2],
                r[3],
                r[4],
                r[5],
                tuple(filter(None, r[6].split(","))),
                r[7] or "",
                r[8] or 0.0,
            ),
        )
        for r in rows
    ]


def read_dynamo_leases(client: Any, table: str) -> list[StoredLease]:
    """Return every lease in a DynamoDB lease table (none when the table does not exist)."""
    found: list[StoredLease] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        try:
            page = client.scan(**kwargs)
        except Exception as exc:
            if aws_error_code(exc) == "ResourceNotFoundException":
                return []
            raise
        for item in page.get("Items", []):
            # rsplit: stream names and shard ids never hold the separator, a group name may
            group, stream, _ = item["lease_key"]["S"].rsplit(_KEY_SEPARATOR, 2)
            found.append(StoredLease(group, stream, _lease(item)))
        if "LastEvaluatedKey" not in page:
            return sorted(found, key=lambda s: (s.group, s.stream, s.lease.shard_id))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _lease(item: dict[str, Any]) -> Lease:
    """Return the lease a DynamoDB item holds."""
    return Lease(
        item["shard_id"]["S"],
        item.get("owner", {}).get("S"),
        int(item["counter"]["N"]),
        item.get("checkpoint", {}).get("S"),
        tuple(sorted(item.get("parents", {}).get("SS", ()))),
        item.get("incarnation", {}).get("S", ""),
        float(item.get("updated", {}).get("N", "0")),
    )


class LeaseTable(Protocol):
    """Where a consumer group keeps its leases; every change is conditional."""

    def list(self) -> list[Lease]:
        """Return every lease of the group and stream."""
        ...

    def create(self, shard_id: str, parents: tuple[str, ...], incarnation: str) -> None:
        """Create a free lease for a shard unless one exists."""
        ...

    def write(self, seen: Lease, new: Lease) -> bool:
        """Replace ``seen`` by ``new`` only if the stored lease is still ``seen``."""
        ...


class SQLiteLeases:
    """Leases in a SQLite file shared by consumers on one host."""

    def __init__(self, path: Path | str, group: str, stream: str) -> None:
        self.path, self.group, self.stream = Path(path), group, stream
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            fast_commits(self._db)
            with self._db:
                self._db.execute(
                    "create table if not exists leases (grp text not null, stream text not null, "
                    "shard_id text not null, owner text, counter integer not null, "
                    "checkpoint text, parents text not null, "
                    "incarnation text not null default '', updated real not null default 0, "
                    "primary key (grp, stream, shard_id))"
                )
                have = {row[1] for row in self._db.execute("pragma table_info(leases)")}
                for column, kind in _ADDED_COLUMNS.items():
                    if column not in have:  # a file of an older version
                        self._db.execute(f"alter table leases add column {column} {kind}")
        except (OSError, sqlite3.Error) as exc:
            raise DeployError(f"cannot open the lease file {self.path}: {exc}") from exc

    def list(self) -> list[Lease]:
        """Return every lease of the group and stream."""
        rows = self._db.execute(
            "select shard_id, owner, counter, checkpoint, parents, incarnation, updated "
            "from leases where grp = ? and stream = ? order by shard_id",
            (self.group, self.stream),
        ).fetchall()
        return [
            Lease(r[0], r[1], r[2], r[3], tuple(filter(None, r[4].split(","))), r[5], r[6])
            for r in rows
        ]

    def create(self, shard_id: str, parents: tuple[str, ...], incarnation: str) -> None:
        """Create a free lease for a shard unless one exists."""
        with self._db:
            self._db.execute(
                "insert into leases (grp, stream, shard_id, owner, counter, checkpoint, "
                "parents, incarnation, updated) values (?, ?, ?, null, 0, null, ?, ?, ?) "
                "on conflict do nothing",
                (self.group, self.stream, shard_id, ",".join(parents), incarnation, time.time()),
            )

    def write(self, seen: Lease, new: Lease) -> bool:
        """Replace ``seen`` by ``new`` only if the stored lease is still ``seen``."""
        with self._db:
            cursor = self._db.execute(
                "update leases set owner = ?, counter = ?, checkpoint = ?, parents = ?, "
                "incarnation = ?, updated = ? "
                "where grp = ? and stream = ? and shard_id = ? and counter = ? and owner is ?",
                (
                    new.owner,
                    new.counter,
                    new.checkpoint,
                    ",".join(new.parents),
                    new.incarnation,
                    time.time(),
                    self.group,
                    self.stream,
                    seen.shard_id,
                    seen.counter,
                    seen.owner,
                ),
            )
        return cursor.rowcount == 1


class DynamoLeases:
    """Leases in a DynamoDB table (conditional writes), for consumers on several hosts."""

    def __init__(self, client: Any, table: str, group: str, stream: str) -> None:
        self.client, self.table, self.group, self.stream = client, table, group, stream
        self._prefix = f"{group}{_KEY_SEPARATOR}{stream}{_KEY_SEPARATOR}"
        try:
            client.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "lease_key", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "lease_key", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except Exception as exc:
            if (
                getattr(exc, "response", {}).get("Error", {}).get("Code")
                != "ResourceInUseException"
            ):
                raise DeployError(f"cannot create lease table {table!r}: {exc}") from exc
        try:
            client.get_waiter("table_exists").wait(
                TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        except Exception as exc:
            raise DeployError(f"lease table {table!r} did not become ACTIVE: {exc}") from exc

    def list(self) -> list[Lease]:
        """Return every lease of the group and stream (a consistent scan)."""
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(lease_key, :p)",
            "ExpressionAttributeValues": {":p": {"S": self._prefix}},
        }
        while True:
            page = self.client.scan(**kwargs)
            leases.extend(_lease(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(leases, key=lambda lease: lease.shard_id)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _item(self, lease: Lease) -> dict[str, Any]:
        item: dict[str, Any] = {
            "lease_key": {"S": self._prefix + lease.shard_id},
            "shard_id": {"S": lease.shard_id},
            "counter": {"N": str(lease.counter)},
            "updated": {"N": repr(time.time())},
        }
        if lease.incarnation:
            item["incarnation"] = {"S": lease.incarnation}
        if lease.owner is not None:
            item["owner"] = {"S": lease.owner}
        if lease.checkpoint is not None:
            item["checkpoint"] = {"S": lease.checkpoint}
        if lease.parents:
            item["parents"] = {"SS": list(lease.parents)}
        return item

    def create(self, shard_id: str, parents: tuple[str, ...], incarnation: str) -> None:
        """Create a free lease for a shard unless one exists."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._item(Lease(shard_id, parents=parents, incarnation=incarnation)),
                ConditionExpression="attribute_not_exists(lease_key)",
            )
        except Exception as exc:
            if aws_error_code(exc) != "ConditionalCheckFailedException":
                raise

    def write(self, seen: Lease, new: Lease) -> bool:
        """Replace ``seen`` by ``new`` only if the stored lease is still ``seen``."""
        condition = "#c = :c AND " + (
            "#o = :o" if seen.owner is not None else "attribute_not_exists(#o)"
        )
        values: dict[str, Any] = {":c": {"N": str(seen.counter)}}
        if seen.owner is not None:
            values[":o"] = {"S": seen.owner}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._item(new),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#c": "counter", "#o": "owner"},
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _created(incarnation: str) -> float:
    """Return the creation time an incarnation (``ARN@seconds``) names; 0 for none."""
    try:
        return float(incarnation.rpartition("@")[2])
    except ValueError:
        return 0.0


@dataclass
class LeaseTaker:
    """Decide which leases a consumer takes, from listings and its own clock (KCL's LeaseTaker).

    A lease is expired when its counter has not changed for ``timeout`` seconds since this
    consumer first saw that counter: no clock of another host is ever compared.
    """

    me: str
    timeout: float
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, tuple[int, float]] = field(default_factory=dict)

    def observe(self, leases: list[Lease]) -> None:
        """Remember when each lease's counter was first seen at its current value."""
        now = self.clock()
        for lease in leases:
            counter, _ = self._seen.get(lease.shard_id, (None, now))
            if counter != lease.counter:
                self._seen[lease.shard_id] = (lease.counter, now)

    def expired(self, lease: Lease) -> bool:
        """Return whether ``lease`` is free, or its owner stopped renewing it."""
        if lease.owner is None:
            return True
        if lease.owner == self.me:
            return False
        counter, since = self._seen.get(lease.shard_id, (lease.counter, self.clock()))
        return counter == lease.counter and self.clock() - since >= self.timeout

    def to_take(self, leases: list[Lease]) -> list[Lease]:
        """Return the leases to take now: available ones up to the fair share, else one steal."""
        self.observe(leases)
        finished = {lease.shard_id for lease in leases if lease.finished}
        known = {lease.shard_id for lease in leases}
        # A child shard waits until every parent still listed was read to its end.
        ready = [
            lease
            for lease in leases
            if not lease.finished and all(p in finished or p not in known for p in lease.parents)
        ]
        owners = Counter(
            lease.owner for lease in ready if lease.owner is not None and not self.expired(lease)
        )
        owners.setdefault(self.me, 0)
        target = math.ceil(len(ready) / len(owners)) if ready else 0
        mine = owners[self.me]
        available = [lease for lease in ready if lease.owner != self.me and self.expired(lease)]
        if available:
            return available[: max(0, target - mine)]
        busiest, held = max(owners.items(), key=lambda item: (item[1], item[0] != self.me))
        if busiest != self.me and held - mine >= 2 and mine < target:
            # Steal one at a time: the group converges without leases bouncing around.
            return [next(lease for lease in ready if lease.owner == busiest)]
        return []

    @staticmethod
    def taken(lease: Lease, me: str) -> Lease:
        """Return the lease as it reads once ``me`` took it."""
        return replace(lease, owner=me, counter=lease.counter + 1)


class LeaseCoordinator:
    """Hold this consumer's leases: create, renew, take, confirm before checkpoints, release."""

    def __init__(
        self,
        table: LeaseTable,
        me: str,
        timeout: float,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.me = me
        self.timeout = timeout
        self.log = log or (lambda message: None)
        self.clock = clock
        self.taker = LeaseTaker(me, timeout, clock)
        self.held: dict[str, Lease] = {}
        self.lost = 0  # leases taken from us while we held them
        self.newer_incarnation: str | None = None  # seen in the table at the last sync
        self._renewed_at = float("-inf")

    def _lose(self, shard_id: str, why: str) -> None:
        self.held.pop(shard_id, None)
        self.lost += 1
        self.log(f"lost the lease of {shard_id} ({why})")

    def sync(self, shards: list[tuple[str, tuple[str, ...]]], incarnation: str) -> set[str]:
        """Create missing leases, renew ours when due, take the fair share; return held ids.

        ``shards`` is the stream's listing (id, parents) and ``incarnation`` names the stream
        it was taken from: leases of another incarnation are reset (see :meth:`_current`),
        leases of shards no longer listed are ignored.
        """
        self.newer_incarnation = None
        leases = self._current(self.table.list(), dict(shards), incarnation)
        known = {lease.shard_id for lease in leases}
        missing = [(shard_id, parents) for shard_id, parents in shards if shard_id not in known]
        for shard_id, parents in missing:
            self.table.create(shard_id, parents, incarnation)
        if missing:
            leases = self._current(self.table.list(), dict(shards), incarnation)
        stored = {lease.shard_id: lease for lease in leases}
        for shard_id, mine in list(self.held.items()):
            if stored.get(shard_id) != mine:
                self._lose(shard_id, "taken over")
        if self.clock() - self._renewed_at >= self.timeout / 3:
            for shard_id, mine in list(self.held.items()):
                if not self._advance(mine, replace(mine, counter=mine.counter + 1)):
                    self._lose(shard_id, "renewal refused")
            self._renewed_at = self.clock()
            leases = self._current(self.table.list(), dict(shards), incarnation)
        for lease in self.taker.to_take(leases):
            taken = LeaseTaker.taken(lease, self.me)
            if self.table.write(lease, taken):
                self.held[lease.shard_id] = taken
                former = f" from {lease.owner}" if lease.owner else ""
                self.log(f"took the lease of {lease.shard_id}{former}")
        return set(self.held)

    def _current(
        self, leases: list[Lease], listed: dict[str, tuple[str, ...]], incarnation: str
    ) -> list[Lease]:
        """Return the leases of the listed shards of this incarnation, resetting older ones.

        A lease of an earlier incarnation (the stream was deleted and created again) is
        written back free and empty, conditionally, so its owner and a ``SHARD_END`` never
        carry over to the new shard of the same id. A lease of a *newer* incarnation means
        this consumer's listing is stale: it is left alone and :attr:`newer_incarnation` set,
        so the consumer lists the stream again instead of undoing the reset.
        """
        current: list[Lease] = []
        for lease in leases:
            if lease.shard_id not in listed:
                continue  # a shard trimmed away, or one of another incarnation's layout
            if lease.incarnation == incarnation:
                current.append(lease)
            elif _created(lease.incarnation) > _created(incarnation):
                self.newer_incarnation = lease.incarnation
            else:
                fresh = Lease(
                    lease.shard_id,
                    None,
                    lease.counter + 1,
                    None,
                    listed[lease.shard_id],
                    incarnation,
                )
                if self.table.write(lease, fresh):
                    self.log(
                        f"reset the lease of {lease.shard_id}: it belonged to "
                        f"{lease.incarnation or 'an unknown incarnation'} of the stream"
                    )
                    current.append(fresh)
        return current

    def _advance(self, mine: Lease, new: Lease) -> bool:
        if not self.table.write(mine, new):
            return False
        self.held[mine.shard_id] = new
        return True

    def confirm(self, shard_id: str) -> bool:
        """Renew a lease before its checkpoint is saved; False (and dropped) if it was lost."""
        mine = self.held.get(shard_id)
        if mine is None:
            return False
        if self._advance(mine, replace(mine, counter=mine.counter + 1)):
            return True
        self._lose(shard_id, "checkpoint refused")
        return False

    def finish(self, shard_id: str) -> None:
        """Mark a shard read to its end (SHARD_END) and let it go, so its children may start."""
        mine = self.held.pop(shard_id, None)
        if mine is not None:
            done = replace(mine, owner=None, counter=mine.counter + 1, checkpoint=SHARD_END)
            if self.table.write(mine, done):
                self.log(f"{shard_id} read to its end (SHARD_END)")

    def release_all(self) -> None:
        """Give every lease back at once (a graceful stop), so others take them next poll."""
        for shard_id, mine in list(self.held.items()):
            if self.table.write(mine, replace(mine, owner=None, counter=mine.counter + 1)):
                self.log(f"released the lease of {shard_id}")
            self.held.pop(shard_id, None)
