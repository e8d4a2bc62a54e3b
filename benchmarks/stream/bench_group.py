"""Benchmark: a consumer group of real ``deploy stream consume`` processes on 4 shards.

On one moto server started here, with one model:

* throughput (first put to last prediction, all rides sent at once) with 1, 2 and 3
  consumers of one group, and the ratios to 1 consumer (the same-run baseline);
* hand-over after SIGKILL: 2 consumers, the one holding leases is killed; seconds from the
  kill until the other holds every lease (goal: lease timeout + 1 s);
* p50/p99 put-to-prediction latency (moto's arrival stamps) at an offered 1,000 rides/s with
  2 consumers (goal: p99 <= 500 ms);
* in every run: no ride lost, and the repeats counted.

The CPU is shared with moto and the other engineers: compare within one run.

Run: .venv/bin/python benchmarks/stream/bench_group.py [--rides 6000] [--lease-timeout 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from deploy_modes.core.demo import ensure_model
from deploy_modes.core.settings import CoreSettings
from deploy_modes.core.storage import aws_client
from deploy_modes.launch.emulator import EMULATOR_CREDENTIALS, ensure_emulator
from deploy_modes.launch.processes import ManagedProcess, free_port
from deploy_modes.stream.kinesis import ensure_streams, read_all
from deploy_modes.stream.leases import SQLiteLeases
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.settings import StreamSettings

SHARDS = 4
DEPLOY = str(Path(sys.executable).parent / "deploy")


class Group:
    """Fresh streams, a lease file, and consumer processes of one group."""

    def __init__(self, endpoint: str, workdir: Path, model: str, lease_timeout: float) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.dir = workdir / suffix
        self.dir.mkdir()
        self.settings = StreamSettings(
            input_stream=f"in_{suffix}",
            output_stream=f"out_{suffix}",
            dlq_stream=f"dlq_{suffix}",
            endpoint_url=endpoint,
            checkpoint_path=self.dir / "checkpoints.sqlite",
            lease_path=self.dir / "leases.sqlite",
        )
        s = self.settings
        self.kinesis = aws_client("kinesis", endpoint)
        ensure_streams(
            self.kinesis,
            [s.input_stream, s.output_stream, s.dlq_stream],
            SHARDS,
            say=lambda m: None,
        )
        self.env = {
            "DEPLOY_STREAM_ENDPOINT_URL": endpoint,
            "DEPLOY_STREAM_INPUT_STREAM": s.input_stream,
            "DEPLOY_STREAM_OUTPUT_STREAM": s.output_stream,
            "DEPLOY_STREAM_DLQ_STREAM": s.dlq_stream,
            "DEPLOY_STREAM_CHECKPOINT_PATH": str(s.checkpoint_path),
            "DEPLOY_STREAM_LEASE_PATH": str(s.lease_path),
            "DEPLOY_STREAM_LEASE_TIMEOUT": str(lease_timeout),
            "DEPLOY_MODEL_LOCATION": model,
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: list[ManagedProcess] = []

    def start(self, count: int) -> None:
        for i in range(count):
            self.processes.append(
                ManagedProcess(
                    f"consumer {i}",
                    [DEPLOY, "stream", "consume", "--group"],
                    env=self.env,
                    log_path=self.dir / f"c{i}.log",
                )
            )
        # Balanced: every lease held, by as many owners as there can be.
        want = min(count, SHARDS)
        self.wait(
            lambda: (
                len(self.owners()) == want
                and all(lease.owner for lease in self.leases())
                and len(self.leases()) == SHARDS
            ),
            120,
        )

    def leases(self):
        return SQLiteLeases(self.settings.lease_path, "default", self.settings.input_stream).list()

    def owners(self) -> set[str]:
        return {lease.owner for lease in self.leases() if lease.owner}

    def wait(self, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {''.join(p.tail(10) for p in self.processes)}")
            time.sleep(0.1)

    def predictions(self) -> dict:
        found: dict = {}
        for record, raw in read_all(self.kinesis, self.settings.output_stream):
            ride_id = json.loads(record.data)["prediction"]["ride_id"]
            found.setdefault(ride_id, []).append(raw["ApproximateArrivalTimestamp"].timestamp())
        return found

    def wait_all(self, rides: int) -> dict:
        while True:
            found = self.predictions()
            if len(found) >= rides:
                return found
            time.sleep(0.5)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def _summary(found: dict, rides: int) -> str:
    lost = rides - len(found)
    repeats = sum(len(v) - 1 for v in found.values())
    return f"lost {lost}, repeats {repeats}"


def throughput(
    endpoint: str, workdir: Path, model: str, rides: list[dict], consumers: int
) -> float:
    group = Group(endpoint, workdir, model, 10.0)
    try:
        group.start(consumers)
        started = time.perf_counter()
        send_rides(group.kinesis, group.settings.input_stream, rides)
        found = group.wait_all(len(rides))
        seconds = time.perf_counter() - started
    finally:
        group.stop()
    rate = len(rides) / seconds
    print(f"  {consumers} consumer(s): {rate:7,.0f} rides/s ({_summary(found, len(rides))})")
    return rate


def handover(endpoint: str, workdir: Path, model: str, lease_timeout: float) -> float:
    group = Group(endpoint, workdir, model, lease_timeout)
    try:
        group.start(2)
        victim = group.processes[0]
        mark = f"-{victim.popen.pid}"
        victim.kill()
        killed = time.perf_counter()
        group.wait(
            lambda: (
                not any((lease.owner or "").endswith(mark) for lease in group.leases())
                and all(lease.owner for lease in group.leases())
            ),
            120,
        )
        seconds = time.perf_counter() - killed
    finally:
        group.stop()
    print(f"  hand-over after SIGKILL: {seconds:.2f} s (lease timeout {lease_timeout:g} s)")
    return seconds


def latency(
    endpoint: str, workdir: Path, model: str, rides: list[dict], rate: float
) -> tuple[float, float]:
    group = Group(endpoint, workdir, model, 10.0)
    try:
        group.start(2)
        send_rides(group.kinesis, group.settings.input_stream, rides, rate=rate)
        found = group.wait_all(len(rides))
    finally:
        group.stop()
    put_at = {
        json.loads(record.data)["ride_id"]: raw["ApproximateArrivalTimestamp"].timestamp()
        for record, raw in read_all(group.kinesis, group.settings.input_stream)
    }
    waits = [min(stamps) - put_at[ride_id] for ride_id, stamps in found.items()]
    p50, p99 = np.percentile(np.asarray(waits), [50, 99])
    print(
        f"  2 consumers at {rate:,.0f} rides/s offered: p50 {p50 * 1000:,.0f} ms, "
        f"p99 {p99 * 1000:,.0f} ms ({_summary(found, len(rides))})"
    )
    return float(p50), float(p99)


def main() -> None:
    """Run the three measurements and print them with the ratios to one consumer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rides", type=int, default=6_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--latency-rides", type=int, default=5_000)
    parser.add_argument("--lease-timeout", type=float, default=10.0)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    os.environ.update({k: v for k, v in EMULATOR_CREDENTIALS.items() if k not in os.environ})
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = args.model or ensure_model(
            CoreSettings(model_location=str(workdir / "model"), data_dir=workdir, demo_rows=20_000),
            say=lambda m: None,
        )
        emulator = ensure_emulator(port=free_port(), log_dir=workdir)
        try:
            print(
                f"group benchmark: {SHARDS} shards, moto at {emulator.url}, "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
            )
            rides = generated_rides(args.rides, seed=42)
            rates = {n: throughput(emulator.url, workdir, model, rides, n) for n in (1, 2, 3)}
            print(
                "  ratios to 1 consumer: "
                + ", ".join(f"{n}: x{rates[n] / rates[1]:.2f}" for n in (2, 3))
            )
            handover(emulator.url, workdir, model, args.lease_timeout)
            latency(
                emulator.url,
                workdir,
                model,
                generated_rides(args.latency_rides, seed=43),
                args.rate,
            )
            print(f"  load average now {os.getloadavg()[0]:.1f}")
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
