"""Integrator app, FastAPI flavour: the same webhook as flask_app.py."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from examples import webhook_receiver
from examples.integration import answer

app = FastAPI()


@app.post("/voice")
async def voice(From: str = Form(...), To: str = Form(...)) -> Response:
    twiml = await run_in_threadpool(answer, From, To)
    return Response(content=twiml, media_type="text/xml")


@app.post("/synthflow/webhook")
async def synthflow_webhook(request: Request) -> JSONResponse:
    try:
        payload: Any = await request.json()
    except ValueError:
        payload = None
    status, body = webhook_receiver.receive(payload, request.headers.get("synthflow-signature"))
    return JSONResponse(body, status_code=status)


@app.get("/synthflow/received")
async def synthflow_received() -> JSONResponse:
    return JSONResponse(webhook_receiver.received())
