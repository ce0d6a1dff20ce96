"""Door 2: httpx, in process, sync and async: the same mock, no server."""

import asyncio

import httpx

BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "my-agent"}


async def prepare(client: httpx.AsyncClient) -> dict:
    resp = await client.post("https://api.synthflow.ai/v2/prepare_inbound", json=BODY,
                             headers={"Authorization": "Bearer test-key"})
    resp.raise_for_status()
    return resp.json()


def test_async_client(synthflow_mock):
    async def run() -> dict:
        async with httpx.AsyncClient() as client:
            return await prepare(client)

    call = asyncio.run(run())
    assert call["call_status"] == "registered"
    assert synthflow_mock.verify(path="/v2/prepare_inbound", status=200)["matched"] == 1


def test_sync_client_sees_a_rate_limit(synthflow_mock):
    synthflow_mock.queue_outcome("rate_limited", retry_after=7)
    resp = httpx.post("https://api.synthflow.ai/v2/prepare_inbound", json=BODY,
                      headers={"Authorization": "Bearer test-key"})
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
