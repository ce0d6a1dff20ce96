"""Integrator app, FastAPI flavour: the same webhook as flask_app.py."""

from __future__ import annotations

from fastapi import FastAPI, Form, Response
from fastapi.concurrency import run_in_threadpool

from examples.integration import answer

app = FastAPI()


@app.post("/voice")
async def voice(From: str = Form(...), To: str = Form(...)) -> Response:
    twiml = await run_in_threadpool(answer, From, To)
    return Response(content=twiml, media_type="text/xml")
