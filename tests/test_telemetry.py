"""The Prometheus endpoint: counts read from the database, this worker's batch metrics."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.config import Config, SocketAddress, load_config
from cervixbatch.config.addresses import parse_socket_address
from cervixbatch.errors import ConfigError
from cervixbatch.store.db import open_database
from cervixbatch.store.queue import status_counts
from cervixbatch.worker.batch_state import BatchOutcome
from cervixbatchd.telemetry import Telemetry


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _samples(text: str, name: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def test_scrape_matches_the_database(tmp_path: Path, make_config: Callable[..., Path]) -> None:
    """After a small batch, the endpoint's counts by status and reason equal the database's."""
    config_path = make_config()
    drop = tmp_path / "drop"
    for seed in range(3):
        write_photo(drop / f"p{seed}.png", draw_photo(seed=seed))
    (drop / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert (
        CliRunner().invoke(main, ["--config", str(config_path), "process", str(drop)]).exit_code
        == 0
    )
    db = open_database(load_config(config_path).database.url)
    telemetry = Telemetry(db)
    telemetry.set_models("a" * 64, "b" * 64, "float32")
    telemetry.observe_batch(
        BatchOutcome(
            inputs=4, done=3, rejected=1, timings_ms={"read": 12.0}, latencies_s=[0.4, 0.9]
        )
    )
    port = _free_port()
    telemetry.serve(SocketAddress("127.0.0.1", port))
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        telemetry.close()
    with db.read_session() as session:
        counts = status_counts(session)
    db.dispose()
    inputs = _samples(text, "cervixbatch_inputs")
    for status, count in counts.items():
        assert inputs[f'cervixbatch_inputs{{status="{status}"}}'] == count
    reasons = _samples(text, "cervixbatch_inputs_by_reason")
    assert sum(reasons.values()) == counts["rejected"] == 1
    assert _samples(text, "cervixbatch_queue_depth")["cervixbatch_queue_depth"] == 0
    assert (
        _samples(text, "cervixbatch_input_latency_seconds_count")[
            "cervixbatch_input_latency_seconds_count"
        ]
        == 2
    )
    assert 'cervixbatch_models_info{cervix="' + "a" * 64 in text
    assert _samples(text, "cervixbatch_last_successful_batch_timestamp_seconds")


def test_listen_address_is_validated() -> None:
    """A listen address must be host:port, the host written out; a bad one names the key."""
    assert parse_socket_address("0.0.0.0:9108") == ("0.0.0.0", 9108)
    for bad in (":9108", "9108"):
        with pytest.raises(ConfigError, match=r"metrics\.listen"):
            Config.from_mapping({"metrics": {"listen": bad}}, base=Path("/"), source="x")
