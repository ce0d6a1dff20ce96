"""Integrator app, Flask flavour: Twilio's voice webhook answers with <Dial><Sip> to Synthflow."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from examples import webhook_receiver
from examples.integration import answer

app = Flask(__name__)


@app.route("/voice", methods=["GET", "POST"])
def voice() -> Response:
    values = request.values
    return Response(answer(values["From"], values["To"]), mimetype="text/xml")


@app.post("/synthflow/webhook")
def synthflow_webhook() -> tuple[Response, int]:
    # The name Synthflow's docs use: the WSGI spelling of the Synthflow-Signature header.
    signature = request.environ.get("HTTP_SYNTHFLOW_SIGNATURE")
    status, body = webhook_receiver.receive(request.get_json(silent=True), signature)
    return jsonify(body), status


@app.get("/synthflow/received")
def synthflow_received() -> Response:
    return jsonify(webhook_receiver.received())
