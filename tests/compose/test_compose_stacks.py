"""End to end: each mode's compose stack built and run on a real Docker engine (marker docker).

Every test tears its stack down afterwards, even on failure (printing the containers' logs).
Host ports are always free ones: 9696 and 4566 belong to people's manual runs.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests

from deploy_modes.compose.stack import Stack, docker_client
from deploy_modes.compose.stacks import StreamStack, WebStack, up_stream, up_web
from deploy_modes.core.data import read_trips
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.storage import aws_client
from deploy_modes.launch.processes import free_port

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

COURSE_RIDE = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}  # course test.py
Deploy = Callable[..., Any]


def _ok(result: Any) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


def _failed_cleanly(result: Any) -> str:
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return str(result.stderr)


def _emulator(mode: str) -> str:
    return f"http://127.0.0.1:{Stack(mode).published_port('emulator', 4566)}"


def test_web_stack_answers_the_course_client_like_the_local_model(
    model_dir: Path,
    model_service: ModelService,
    tmp_path: Path,
    stack_teardown: list[str],
    deploy_cli: Deploy,
) -> None:
    stack_teardown.append("web")
    port = free_port()
    out = _ok(
        deploy_cli(
            ["web", "--runtime", "compose", "--port", str(port), "--model", str(model_dir)],
            cwd=tmp_path,
        )
    )
    url = f"http://127.0.0.1:{port}"
    assert f"{url}/predict" in out and "deploy down web" in out

    response = requests.post(f"{url}/predict", json=COURSE_RIDE, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["duration"] == pytest.approx(
        model_service.predict_one(COURSE_RIDE), rel=1e-9
    )
    ready = requests.get(f"{url}/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["model_version"] == model_service.version
    metrics = requests.get(f"{url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "# TYPE" in metrics.text
    # bad input reaches the container as a clear 4xx, never a 500
    broken = requests.post(
        f"{url}/predict", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert 400 <= broken.status_code < 500 and "error" in broken.json()
    wrong = requests.post(f"{url}/predict", json={**COURSE_RIDE, "PULocationID": 999})
    assert wrong.status_code in (400, 422) and wrong.json()["field"] == "PULocationID"

    status = _ok(deploy_cli(["status"], cwd=tmp_path))
    row = next(line for line in status.splitlines() if " web " in line and "compose" in line)
    assert "healthy" in row and f"127.0.0.1:{port}" in row
    logs = _ok(deploy_cli(["logs", "web", "--tail", "20"], cwd=tmp_path))
    assert "/predict" in logs or "Booting worker" in logs or "Listening" in logs

    _ok(deploy_cli(["down", "web"], cwd=tmp_path))
    assert Stack("web").containers() == []


def test_batch_stack_scores_a_generated_month_into_emulated_s3(
    model_dir: Path,
    model_service: ModelService,
    tmp_path: Path,
    stack_teardown: list[str],
    deploy_cli: Deploy,
) -> None:
    stack_teardown.append("batch")
    out = _ok(
        deploy_cli(
            ["batch", "--runtime", "compose", "--month", "2021-03", "--model", str(model_dir)],
            cwd=tmp_path,
        )
    )
    assert "s3://deploy-modes/predictions/" in out

    s3 = aws_client("s3", endpoint=_emulator("batch"))
    listing = s3.list_objects_v2(Bucket="deploy-modes", Prefix="predictions/")
    keys = [item["Key"] for item in listing.get("Contents", [])]
    expected_key = f"predictions/taxi_type=green/year=2021/month=03/{model_service.version}.parquet"
    assert keys == [expected_key]
    body = s3.get_object(Bucket="deploy-modes", Key=expected_key)["Body"].read()
    scored = pq.read_table(io.BytesIO(body)).to_pandas()

    # The same input scored by local processes gives the same rows and predictions.
    source = tmp_path / "green_tripdata_2021-03.parquet"
    source.write_bytes(
        s3.get_object(Bucket="deploy-modes", Key="input/green_tripdata_2021-03.parquet")[
            "Body"
        ].read()
    )
    local_out = tmp_path / "local.parquet"
    _ok(
        deploy_cli(
            [
                "batch",
                "--runtime",
                "local",
                "--month",
                "2021-03",
                "--input",
                str(source),
                "--output",
                str(local_out),
                "--model",
                str(model_dir),
            ],
            cwd=tmp_path,
        )
    )
    local = pq.read_table(local_out).to_pandas()
    rides = read_trips(source)
    assert 0 < len(scored) == len(local) <= len(rides)
    assert list(scored["ride_id"]) == list(local["ride_id"])
    np.testing.assert_allclose(scored["predicted_duration"], local["predicted_duration"])

    # ...and each prediction is the model's own for that source row.
    positions = scored["ride_id"].str.rsplit("_", n=1).str[1].astype(int).to_numpy()
    expected = model_service.predict_arrays(
        rides["PULocationID"].to_numpy(dtype="float64")[positions].astype("int64"),
        rides["DOLocationID"].to_numpy(dtype="float64")[positions].astype("int64"),
        rides["trip_distance"].to_numpy(dtype="float64")[positions],
    )
    np.testing.assert_allclose(scored["predicted_duration"], expected, rtol=1e-9)
    assert set(scored["model_version"]) == {model_service.version}


def _records(kinesis: Any, stream: str, wanted: int, timeout: float = 180.0) -> list[dict]:
    """Read every shard of ``stream`` from the start until ``wanted`` records arrived."""
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    iterators = {
        shard: kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for shard in shards
    }
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(found) < wanted and time.monotonic() < deadline:
        for shard, iterator in iterators.items():
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            iterators[shard] = page["NextShardIterator"]
            found.extend(json.loads(record["Data"]) for record in page["Records"])
        time.sleep(0.3)
    return found


def test_stream_stack_turns_200_rides_into_200_prediction_events(
    model_dir: Path,
    model_service: ModelService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stack_teardown: list[str],
) -> None:
    stack_teardown.append("stream")
    monkeypatch.chdir(tmp_path)
    up_stream(StreamStack(model=str(model_dir), shards=2, count=20))  # the producer sends 20

    kinesis = aws_client("kinesis", endpoint=_emulator("stream"))
    rng = np.random.default_rng(7)
    rides = {
        10_000 + i: {
            "PULocationID": int(rng.integers(1, 266)),
            "DOLocationID": int(rng.integers(1, 266)),
            "trip_distance": float(np.round(rng.uniform(0.3, 25.0), 2)),
        }
        for i in range(200)
    }
    entries = [
        {
            "Data": json.dumps({"ride": ride, "ride_id": ride_id}).encode(),
            "PartitionKey": str(ride_id),
        }
        for ride_id, ride in rides.items()
    ]
    for start in range(0, len(entries), 100):
        put = kinesis.put_records(StreamName="ride_events", Records=entries[start : start + 100])
        assert put["FailedRecordCount"] == 0

    events = _records(kinesis, "ride_predictions", wanted=200 + 20)
    ours = {
        int(event["prediction"]["ride_id"]): event
        for event in events
        if int(event["prediction"]["ride_id"]) >= 10_000
    }
    assert set(ours) == set(rides)
    for ride_id, event in ours.items():
        assert event["prediction"]["ride_duration"] == pytest.approx(
            model_service.predict_one(rides[ride_id]), rel=1e-9
        )
        assert event["version"] == model_service.version
    # The producer's 20 generated rides each became a prediction or a dead letter.
    produced = len(events) - len(ours)
    dead = _records(kinesis, "ride_events_dlq", wanted=20 - produced, timeout=5.0)
    assert produced + len(dead) == 20


def test_a_taken_port_is_a_clear_error_and_starts_nothing(
    model_dir: Path, tmp_path: Path, stack_teardown: list[str], deploy_cli: Deploy
) -> None:
    stack_teardown.append("web")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = _failed_cleanly(
            deploy_cli(
                ["web", "--runtime", "compose", "--port", str(port), "--model", str(model_dir)],
                cwd=tmp_path,
            )
        )
    assert f"port {port} is already taken" in err
    assert Stack("web").containers() == []


def test_an_unhealthy_container_prints_its_logs_and_is_torn_down(
    model_dir: Path, tmp_path: Path, stack_teardown: list[str], deploy_cli: Deploy
) -> None:
    stack_teardown.append("web")
    # 0 workers is refused by the web settings inside the container: gunicorn cannot start.
    result = deploy_cli(
        ["web", "--runtime", "compose", "--port", str(free_port()), "--model", str(model_dir)],
        cwd=tmp_path,
        env={"DEPLOY_COMPOSE_WEB_WORKERS": "0"},
    )
    err = _failed_cleanly(result)
    assert any(f"the web container {what}" in err for what in ("exited", "crashed", "is unhealthy"))
    assert "container logs" in err and "DEPLOY_WEB_WORKERS" in err  # the container's complaint
    assert Stack("web").containers() == []


def test_a_failed_build_is_a_clear_error_and_starts_nothing(
    model_dir: Path, tmp_path: Path, stack_teardown: list[str], deploy_cli: Deploy
) -> None:
    stack_teardown.append("web")
    result = deploy_cli(
        ["web", "--runtime", "compose", "--port", str(free_port()), "--model", str(model_dir)],
        cwd=tmp_path,
        env={"DEPLOY_COMPOSE_BASE_IMAGE": "deploy-modes/no-such-base:missing"},
    )
    err = _failed_cleanly(result)
    assert "building the web images failed" in err
    assert Stack("web").containers() == []


def test_bake_builds_the_model_into_the_image_instead_of_mounting_it(
    model_dir: Path,
    model_service: ModelService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stack_teardown: list[str],
) -> None:
    stack_teardown.append("web")
    monkeypatch.chdir(tmp_path)
    port = free_port()
    up_web(WebStack(port=port, model=str(model_dir), bake=True))

    client = docker_client()
    (container,) = client.containers.list(
        filters={"label": f"com.docker.compose.project={Stack('web').project}"}
    )
    assert container.image.tags[0].startswith("deploy-modes/web-baked:")
    assert not [m for m in container.attrs["Mounts"] if m["Destination"] == "/model"]
    response = requests.post(f"http://127.0.0.1:{port}/predict", json=COURSE_RIDE, timeout=10)
    assert response.json()["duration"] == pytest.approx(
        model_service.predict_one(COURSE_RIDE), rel=1e-9
    )
