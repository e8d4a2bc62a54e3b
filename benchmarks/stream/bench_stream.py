"""Benchmark: the course's Lambda loop vs the consumer, same rides, same emulator.

Both runners read the same kind of stream (2 shards) on one moto server started here:

* **course**: what the Zoomcamp's ``lambda_handler`` does, fed the way Lambda's event source
  mapping feeds it (GetRecords batches of 100, one poller per shard): per record base64 +
  JSON decode, ``pipeline.predict`` on one feature dict, one ``put_record`` per prediction;
* **consumer**: :class:`deploy_modes.stream.consumer.Consumer` with default settings.

It prints rides/s end to end (first put to last prediction) for 10,000 rides sent at once,
and p50/p99 put-to-prediction latency (moto's arrival stamps on the input and output
records) at an offered load of 1,000 rides/s, then the consumer/course ratio. The CPU is
shared, so only the ratio within one run is meaningful.

Run: .venv/bin/python benchmarks/stream/bench_stream.py [--rides 10000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deploy_modes.core import MODEL_NAME
from deploy_modes.core.artifact import load_model
from deploy_modes.core.demo import ensure_model
from deploy_modes.core.features import ride_features
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.settings import CoreSettings
from deploy_modes.core.storage import aws_client
from deploy_modes.launch.emulator import EMULATOR_CREDENTIALS, ensure_emulator
from deploy_modes.launch.processes import free_port
from deploy_modes.stream.checkpoints import SQLiteCheckpoints
from deploy_modes.stream.consumer import Consumer
from deploy_modes.stream.kinesis import ShardReader, ensure_streams, list_shard_ids, read_all
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.service import StreamService
from deploy_modes.stream.settings import StreamSettings

SHARDS = 2
LAMBDA_BATCH = 100  # Lambda's default batch size for a Kinesis event source


def course_lambda_handler(event: dict, pipeline: Any, version: str, kinesis: Any, stream: str):
    """The course's handler: one prediction and one put_record per ride."""
    predictions_events = []
    for record in event["Records"]:
        ride_event = json.loads(base64.b64decode(record["kinesis"]["data"]).decode("utf-8"))
        ride = ride_event["ride"]
        ride_id = ride_event["ride_id"]
        features = ride_features(ride["PULocationID"], ride["DOLocationID"], ride["trip_distance"])
        prediction = float(pipeline.predict([features])[0])
        prediction_event = {
            "model": MODEL_NAME,
            "version": version,
            "prediction": {"ride_duration": prediction, "ride_id": ride_id},
        }
        kinesis.put_record(
            StreamName=stream, Data=json.dumps(prediction_event), PartitionKey=str(ride_id)
        )
        predictions_events.append(prediction_event)
    return {"predictions": predictions_events}


class CourseRunner:
    """Lambda's event source mapping, imitated: one poller per shard invoking the handler."""

    def __init__(self, endpoint: str, settings: StreamSettings, model_location: str) -> None:
        self.endpoint = endpoint
        self.settings = settings
        loaded = load_model(model_location)
        self.pipeline, self.version = loaded.pipeline, loaded.version
        self.predictions = 0
        self._lock = threading.Lock()

    def _poll_shard(self, shard_id: str, stop: threading.Event) -> None:
        kinesis = aws_client("kinesis", self.endpoint)
        reader = ShardReader(kinesis, self.settings.input_stream, shard_id)
        while not stop.is_set():
            records = reader.read(LAMBDA_BATCH)
            if not records:
                stop.wait(0.05)
                continue
            event = {
                "Records": [
                    {
                        "kinesis": {
                            "data": base64.b64encode(r.data).decode(),
                            "sequenceNumber": r.sequence,
                        }
                    }
                    for r in records
                ]
            }
            out = course_lambda_handler(
                event, self.pipeline, self.version, kinesis, self.settings.output_stream
            )
            with self._lock:
                self.predictions += len(out["predictions"])

    def run(self, stop: threading.Event) -> None:
        kinesis = aws_client("kinesis", self.endpoint)
        threads = [
            threading.Thread(target=self._poll_shard, args=(shard, stop), daemon=True)
            for shard in list_shard_ids(kinesis, self.settings.input_stream)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _fresh_streams(endpoint: str, workdir: Path) -> StreamSettings:
    suffix = uuid.uuid4().hex[:6]
    settings = StreamSettings(
        input_stream=f"ride_events_{suffix}",
        output_stream=f"ride_predictions_{suffix}",
        dlq_stream=f"ride_events_dlq_{suffix}",
        endpoint_url=endpoint,
        checkpoint_path=workdir / f"checkpoints-{suffix}.sqlite",
    )
    names = [settings.input_stream, settings.output_stream, settings.dlq_stream]
    ensure_streams(aws_client("kinesis", endpoint), names, SHARDS, say=lambda m: None)
    return settings


def _start_runner(kind: str, endpoint: str, settings: StreamSettings, model: str):
    """Start a runner thread; return (stop event, thread, predictions-so-far function)."""
    stop = threading.Event()
    if kind == "course":
        runner = CourseRunner(endpoint, settings, model)
        done: Callable[[], int] = lambda: runner.predictions  # noqa: E731
        target = runner.run
    else:
        service = StreamService(ModelService(load_model(model)))
        consumer = Consumer(
            service,
            aws_client("kinesis", endpoint),
            SQLiteCheckpoints(settings.checkpoint_path),
            settings,
        )
        done = lambda: consumer.stats.predictions  # noqa: E731
        target = consumer.run
    thread = threading.Thread(target=target, args=(stop,), daemon=True)
    thread.start()
    return stop, thread, done


def throughput(kind: str, endpoint: str, workdir: Path, model: str, rides: list[dict]) -> float:
    """Return rides/s from the first put to the last prediction, all rides sent at once."""
    settings = _fresh_streams(endpoint, workdir)
    stop, thread, done = _start_runner(kind, endpoint, settings, model)
    time.sleep(0.5)  # let the runner discover its shards before the clock starts
    started = time.perf_counter()
    send_rides(aws_client("kinesis", endpoint), settings.input_stream, rides)
    while done() < len(rides):
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    stop.set()
    thread.join(30)
    return len(rides) / seconds


def latency(
    kind: str, endpoint: str, workdir: Path, model: str, rides: list[dict], rate: float
) -> tuple[float, float]:
    """Return p50/p99 seconds from input arrival to output arrival at ``rate`` rides/s."""
    settings = _fresh_streams(endpoint, workdir)
    stop, thread, done = _start_runner(kind, endpoint, settings, model)
    time.sleep(0.5)
    kinesis = aws_client("kinesis", endpoint)
    send_rides(kinesis, settings.input_stream, rides, rate=rate)
    while done() < len(rides):
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    put_at = {
        json.loads(record.data)["ride_id"]: raw["ApproximateArrivalTimestamp"].timestamp()
        for record, raw in read_all(kinesis, settings.input_stream)
    }
    waits = [
        raw["ApproximateArrivalTimestamp"].timestamp()
        - put_at[json.loads(record.data)["prediction"]["ride_id"]]
        for record, raw in read_all(kinesis, settings.output_stream)
    ]
    p50, p99 = np.percentile(np.asarray(waits), [50, 99])
    return float(p50), float(p99)


def main() -> None:
    """Run both runners on the same rides and print the figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rides", type=int, default=10_000, help="rides for the throughput run")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered load, rides/s")
    parser.add_argument("--latency-rides", type=int, default=5_000, help="rides at that load")
    parser.add_argument("--model", default=None, help="model location (default: a demo model)")
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
            rides = generated_rides(args.rides, seed=42)
            slow = generated_rides(args.latency_rides, seed=43)
            print(
                f"stream benchmark: {args.rides:,} rides, {SHARDS} shards, moto at "
                f"{emulator.url}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
            )
            results = {}
            for kind in ("course", "consumer"):
                rate = throughput(kind, emulator.url, workdir, model, rides)
                p50, p99 = latency(kind, emulator.url, workdir, model, slow, args.rate)
                results[kind] = (rate, p50, p99)
                print(
                    f"{kind:>9}: {rate:8,.0f} rides/s end to end | at {args.rate:,.0f} rides/s "
                    f"offered: p50 {p50 * 1000:7,.0f} ms, p99 {p99 * 1000:7,.0f} ms"
                )
            course, consumer = results["course"], results["consumer"]
            print(
                f"ratio consumer/course: throughput x{consumer[0] / course[0]:.1f}, "
                f"p99 latency x{course[2] / consumer[2]:.1f} lower "
                f"(load average now {os.getloadavg()[0]:.1f})"
            )
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
