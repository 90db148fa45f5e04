"""The console in distributed mode: two `taskbroker serve` replicas on one Redis and one
PostgreSQL ledger, the session's Celery worker.  A session made on one replica is accepted by
the other (they sign with the key the ledger keeps), the workers page shows the real worker
from its heartbeat row, and a task started from one replica's form runs and shows its
timeline on the other."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LOG_DIR
from tests.support.procs import Proc, free_port, start_process, taskbroker_argv, wait_for

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def replicas(dist_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, Any]]:
    from taskbroker.mcp.tokens import add_token

    tokens = tmp_path_factory.mktemp("console-dist") / "tokens.json"
    root = add_token(tokens, "root", ["admin"])
    env = dict(dist_env, TASKBROKER_TOKEN_FILE=str(tokens))
    procs: list[Proc] = []
    urls = []
    try:
        for i in range(2):
            port = free_port()
            procs.append(start_process(
                taskbroker_argv("serve", "--port", str(port), "--no-worker"), env=env,
                name=f"console-replica-{i}", log_dir=LOG_DIR))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_for(lambda url=url: httpx.get(f"{url}/healthz").status_code == 200,
                     timeout=60, what="replica up")
        yield {"urls": urls, "root": root}
    finally:
        for proc in procs:
            proc.stop()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found
    return found.group(1)


def test_replicas_share_sessions_and_show_the_real_worker(replicas: dict[str, Any]) -> None:
    first, second = replicas["urls"]
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        client.get(f"{first}/ui/login")
        nonce = client.cookies.get("tb_console_login")
        signed = client.post(f"{first}/ui/login", data={"token": replicas["root"],
                                                        "nonce": nonce})
        assert signed.status_code == 303
        cookie = client.cookies.get("tb_console")
        assert cookie

        # the other replica accepts the same cookie
        other = httpx.Client(follow_redirects=False, timeout=30, cookies={"tb_console": cookie})
        with other:
            workers = other.get(f"{second}/ui/workers")
            assert workers.status_code == 200
            assert re.search(r"<td class=\"mono\">[^<@]+@[^<]+</td><td>alive</td>",
                             workers.text), workers.text[-2000:]

            types = other.get(f"{second}/ui/types")
            started = other.post(f"{second}/ui/types/test_count/start", data={
                "csrf": csrf_of(types.text), "p.n": "3", "p.step_ms": "10"})
            assert started.status_code == 303
            task_url = started.headers["location"]

        def finished() -> str | None:
            page = client.get(f"{first}{task_url}").text
            return page if 'data-testid="status">success<' in page else None

        page = wait_for(finished, timeout=60, interval=0.3, what="the task finished")
        assert "step 3/3" in page and re.search(r"started \(on [^<@]+@", page)
        assert "&#34;sum&#34;: 6" in page
