"""Run by the *fastmcp 4* client's own interpreter (an independent implementation of the MCP
tasks extension), not by the test process: drives a taskbroker server through the extension
and prints what it saw as one JSON object.

    python fastmcp_probe.py <url> <token> <foreign task id>
"""

import asyncio
import json
import sys


async def main(url: str, token: str, foreign: str) -> dict:
    from fastmcp import Client
    from fastmcp.client.auth import BearerAuth
    from fastmcp_tasks.client import call_tool_task

    seen: dict = {}
    async with Client(url, auth=BearerAuth(token)) as client:
        # transparent: the client follows the task handle to the result
        result = await client.call_tool("test_count", {"n": 4, "step_ms": 20})
        seen["transparent"] = result.structured_content
        # explicit handle
        task = await call_tool_task(client, "test_count", {"n": 3, "step_ms": 20})
        seen["task_id"] = task.task_id
        seen["first_status"] = (await task.status()).status
        done = await task.result()
        seen["handle_result"] = done.structured_content
        final = await task.status()
        seen["final_status"] = final.status
        # cancel
        sleeper = await call_tool_task(client, "test_sleep", {"seconds": 30})
        await sleeper.cancel()
        ended = await sleeper.wait(timeout=60)
        seen["cancelled_status"] = ended.status
        # another user's task and an unknown one
        errors = []
        for probe in (foreign, "00000000-0000-4000-8000-000000000000"):
            try:
                from fastmcp_tasks.client import _send_get

                await _send_get(client.session, probe)
                errors.append("no error")
            except Exception as exc:
                errors.append(f"{getattr(getattr(exc, 'error', None), 'code', None)}: "
                              f"{getattr(getattr(exc, 'error', None), 'message', exc)}")
        seen["foreign_and_unknown"] = errors
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))))
