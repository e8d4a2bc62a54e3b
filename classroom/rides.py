"""The room's rides: a pool of valid generated rides, handed out with fresh ids at a rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Generator", "Ride", "RidePool"]

_TICK = 0.05  # seconds between two hand-outs: smooth enough at 1..500 rides/s


@dataclass(frozen=True)
class Ride:
    """One generated ride: its id, its row in the pool, its features, when it was sent."""

    ride_id: int
    row: int
    pu: int
    do: int
    distance: float
    sent: float  # seconds since the room started

    def payload(self) -> dict[str, Any]:
        """Return the course's web payload, with the ride's id."""
        return {
            "PULocationID": self.pu,
            "DOLocationID": self.do,
            "trip_distance": self.distance,
            "ride_id": self.ride_id,
        }

    def event(self) -> dict[str, Any]:
        """Return the course's stream event."""
        return {
            "ride": {
                "PULocationID": self.pu,
                "DOLocationID": self.do,
                "trip_distance": self.distance,
            },
            "ride_id": self.ride_id,
        }


class RidePool:
    """Rides every mode can score (compare's selection), as arrays and as a TLC parquet table."""

    def __init__(self, count: int, seed: int, workdir: Path) -> None:
        import pyarrow.parquet as pq

        from deploy_modes.compare.rides import prepare_rides

        rides = prepare_rides(count, seed, workdir)
        self.pu = [int(v) for v in rides.pu]
        self.do = [int(v) for v in rides.do]
        self.distance = [float(v) for v in rides.distance]
        self.table = pq.read_table(rides.path)  # the batch job's input columns, one row per ride

    def __len__(self) -> int:
        return len(self.pu)

    def ride(self, ride_id: int, sent: float) -> Ride:
        """Return ride ``ride_id``: the pool's rows are reused in turn under new ids."""
        row = (ride_id - 1) % len(self.pu)
        return Ride(ride_id, row, self.pu[row], self.do[row], self.distance[row], sent)

    def write(self, rows: Sequence[int], path: Path) -> None:
        """Write the pool's ``rows`` (in that order) as a TLC parquet file for the batch job."""
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.table.take(list(rows)), path)


class Generator:
    """Hand out rides at ``rate`` per second to every sink, from a thread, until stopped."""

    def __init__(
        self,
        pool: RidePool,
        sinks: Sequence[Callable[[list[Ride]], None]],
        clock: Callable[[], float],
        rate: float,
    ) -> None:
        self.pool = pool
        self.sinks = list(sinks)
        self.clock = clock
        self.rate = rate
        self.sent = 0
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ride-generator", daemon=True)

    def start(self) -> None:
        """Start sending."""
        self._thread.start()

    def _run(self) -> None:
        owed = 0.0
        last = time.monotonic()
        while not self.stop.wait(_TICK):
            now = time.monotonic()
            owed += (now - last) * self.rate
            last = now
            count = int(owed)
            if not count:
                continue
            owed -= count
            sent = self.clock()
            rides = [self.pool.ride(self.sent + k + 1, sent) for k in range(count)]
            self.sent += count
            for sink in self.sinks:
                sink(rides)

    def close(self) -> None:
        """Stop sending and wait for the thread."""
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
