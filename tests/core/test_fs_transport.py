"""The embedded broker's filesystem transport never hands out a half-written message."""

from __future__ import annotations

import threading
from pathlib import Path

from kombu import Connection

from taskbroker.adapters.celery.fs_transport import Transport


def test_concurrent_publish_and_consume_lose_nothing(tmp_path: Path) -> None:
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path),
               "control_folder": str(tmp_path), "polling_interval": 0.001}
    sent = [{"n": i, "pad": "x" * 20_000} for i in range(300)]
    received: list[int] = []
    with Connection("filesystem://", transport=Transport, transport_options=options) as conn:
        queue = conn.SimpleQueue("q")
        producer = threading.Thread(target=lambda: [queue.put(m) for m in sent])
        producer.start()
        while len(received) < len(sent):
            message = queue.get(timeout=30)
            received.append(message.payload["n"])
            message.ack()
        producer.join(30)
        queue.close()
    assert sorted(received) == list(range(300))
    assert not list(tmp_path.glob(".*.partial"))
