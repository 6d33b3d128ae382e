"""Webhook notices: one signed JSON notice per finished input, stored with the input's
commit and delivered at least once to a real HTTP server that is down at first."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.dicom_fixtures import vl_image
from support.net import free_port
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.delivery.webhook import SIGNATURE_HEADER

SECRET = b"a-long-random-signing-key"


class Receiver:
    """A real HTTP server on loopback that records every POST and answers 204."""

    def __init__(self, port: int) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append((dict(self.headers), self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def hook(tmp_path: Path, make_config: Callable[..., Path]) -> Callable[..., Path]:
    """A config whose webhook points at a free loopback port (nobody listens yet)."""
    secret = tmp_path / "webhook.key"
    secret.write_bytes(SECRET + b"\n")
    port = free_port()

    def configure(**overrides: object) -> Path:
        return make_config(
            webhook__url=f"http://127.0.0.1:{port}/cervixbatch",
            webhook__secret_file=str(secret),
            webhook__backoff_seconds=0.05,
            webhook__max_backoff_seconds=0.1,
            **overrides,
        )

    configure.port = port  # type: ignore[attr-defined]
    return configure


def notices(config: Path) -> list[tuple[int, int, str | None, str | None]]:
    database = config.parent / "state" / "cervixbatch.db"
    with sqlite3.connect(database) as connection:
        return connection.execute(
            "SELECT input_id, attempts, delivered_at, last_error FROM webhook_notices ORDER BY id"
        ).fetchall()


def deliveries(config: Path) -> dict[str, dict[str, int]]:
    """What `cervixbatch status --format json` says of the deliveries."""
    shown = CliRunner().invoke(main, ["--config", str(config), "status", "--format", "json"])
    return dict(json.loads(shown.stdout)["deliveries"])


def process(config: Path, *files: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(config), "process", *map(str, files)])
    assert result.exit_code in {0, 1}, result.output  # 1: something was rejected


def test_notices_wait_for_a_receiver_that_is_down_and_arrive_signed(
    tmp_path: Path, hook: Callable[..., Path]
) -> None:
    """With the receiver down the notices of a done and a rejected input are kept, with
    their failed attempts; once it is up they arrive, each signed with HMAC-SHA256 over
    the body, naming status, reason, fractions, models and output names — no path."""
    config = hook()
    photo = write_photo(tmp_path / "drop" / "a.jpg", draw_photo(seed=41))
    broken = tmp_path / "drop" / "b.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    process(config, photo, broken)
    kept = notices(config)
    assert len(kept) == 2
    assert all(attempts >= 1 and delivered is None for _, attempts, delivered, _ in kept)
    assert all("cannot reach" in (error or "") for *_, error in kept)
    assert deliveries(config) == {"webhook": {"pending": 2}}

    receiver = Receiver(hook.port)  # type: ignore[attr-defined]
    try:
        later = write_photo(tmp_path / "drop" / "c.jpg", draw_photo(seed=42))
        process(config, later)  # its run delivers what the first one kept, and its own
    finally:
        receiver.close()
    assert all(delivered is not None for _, _, delivered, _ in notices(config))
    assert deliveries(config) == {"webhook": {"delivered": 3}}

    bodies = {}
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER] == expected
        assert headers["Content-Type"] == "application/json"
        notice = json.loads(body)
        bodies[notice["input_id"]] = notice
    assert sorted(bodies) == [1, 2, 3]  # each input once
    done, rejected = bodies[1], bodies[2]
    assert done["status"] == "done" and done["reason"] is None
    assert len(done["sha256"]) == 64 and set(done["models"]) == {"cervix", "lesion"}
    (frame,) = done["frames"]
    assert 0 < frame["cervix_fraction"] <= 1 and frame["cervix_found"] is True
    assert "cervix_mask.png" in frame["outputs"] and "overlay.jpg" in frame["outputs"]
    assert rejected["status"] == "rejected" and rejected["reason"] and rejected["frames"] == []
    for body in (done, rejected):
        assert "path" not in body and "patient" not in body
    text = b"".join(body for _, body in receiver.posts).decode()
    assert str(tmp_path) not in text and "a.jpg" not in text


def test_include_patient_adds_the_path_and_the_patient(
    tmp_path: Path, hook: Callable[..., Path]
) -> None:
    """include_patient = true: the notice of a DICOM input carries its path and patient
    and study identifiers (and only then)."""
    config = hook(webhook__include_patient=True)
    receiver = Receiver(hook.port)  # type: ignore[attr-defined]
    try:
        process(config, vl_image(tmp_path / "drop" / "exam.dcm", [draw_photo(160, 120, seed=43)]))
    finally:
        receiver.close()
    ((_, body),) = receiver.posts
    notice = json.loads(body)
    assert notice["path"].endswith("exam.dcm")
    assert notice["patient"]["PatientID"] == "PID-778899"
    assert "sr.dcm" in notice["frames"][0]["outputs"]
