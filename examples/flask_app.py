"""Integrator app, Flask flavour: Twilio's voice webhook answers with <Dial><Sip> to Synthflow."""

from __future__ import annotations

from flask import Flask, Response, request

from examples.integration import answer

app = Flask(__name__)


@app.route("/voice", methods=["GET", "POST"])
def voice() -> Response:
    values = request.values
    return Response(answer(values["From"], values["To"]), mimetype="text/xml")
