"""The outcome engine: which answer a prepare_inbound request gets, what its SIP call will do, and why.

Sources, highest first (README, "Outcomes and faults"):

1. the request's ``Prefer`` header (``outcome=...``, ``sip=...``, ``delay-ms=...``);
2. a queued scenario from ``POST /_mock/scenarios`` that matches the request (consumed once);
3. a magic caller number (``from_number``) from :data:`MAGIC_NUMBERS`;
4. the seeded global policy (``--outcome-rate``, ``POST /_mock/policy``): one draw per request;
5. the server default (``--outcome``).

The HTTP outcome and the SIP plan are chosen independently down the same list,
so a header can script "prepare succeeds, INVITE is declined". Every decision
carries its source, and the journal records it. :func:`decide` walks the list;
it takes plain values and two store operations, not a request.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mock_server.core.errors import ApiError

HTTP_OUTCOMES: dict[str, str] = {
    "registered": "200, call_status registered",
    "failed": "the outage answer: call_status failed (HTTP status from --failed-status)",
    "unauthorized": "401 error",
    "invalid": "422 error",
    "rate_limited": "429 error with Retry-After",
    "server_error": "500 error",
    "unavailable": "503 error with Retry-After",
    "slow": "registered, after delay-ms (default 2000)",
    "timeout": "no answer for hold-s (default 30), then the connection is dropped",
    "reset": "the connection is dropped without an answer",
}
SIP_PLANS: dict[str, str] = {
    "answer": "100, 180, 200 (the default)",
    "busy": "486 Busy Here",
    "unavailable": "480 Temporarily Unavailable",
    "overloaded": "503 Service Unavailable with Retry-After",
    "decline": "603 Decline",
    "no_answer": "rings for no-answer-ms (default 3000), then 408 Request Timeout",
    "ring_forever": "rings until the caller CANCELs (then 487)",
    "hangup": "answers, then the mock sends BYE after hangup-after-ms (default 2000)",
    "transfer": "answers, then after transfer-after-ms (default 2000) the mock REFERs the caller elsewhere",
}
ERROR_OUTCOMES: dict[str, tuple[int, str, str, int]] = {
    # outcome: (status, category, description, default Retry-After seconds or 0)
    "unauthorized": (401, "unauthorized", "The API key was refused", 0),
    "invalid": (422, "validation_error", "The request was refused as invalid", 0),
    "rate_limited": (429, "rate_limited",
                     "429: Rate limit exceeded. Your rate limit per minute is 60. Contact Sales to increase the rate "
                     "limit.", 30),
    "server_error": (500, "internal_error", "Internal server error", 0),
    "unavailable": (503, "service_unavailable", "Service unavailable", 30),
}
MATCH_FIELDS = ("path", "from_number", "to_number", "model_id", "workspace_id")
"""What a queued scenario may match on."""
SIP_REJECT_CODES = {"busy": (486, "Busy Here"), "unavailable": (480, "Temporarily Unavailable"),
                    "overloaded": (503, "Service Unavailable"), "decline": (603, "Decline")}

# Fictional NANP numbers (555-01xx), used as the caller number (from_number).
MAGIC_NUMBERS: dict[str, dict[str, Any]] = {
    "+15550100100": {"outcome": "failed"},
    "+15550100401": {"outcome": "unauthorized"},
    "+15550100422": {"outcome": "invalid"},
    "+15550100429": {"outcome": "rate_limited"},
    "+15550100500": {"outcome": "server_error"},
    "+15550100503": {"outcome": "unavailable"},
    "+15550100504": {"outcome": "timeout"},
    "+15550100508": {"outcome": "slow"},
    "+15550100599": {"outcome": "reset"},
    "+15550101486": {"sip": "busy"},
    "+15550101480": {"sip": "unavailable"},
    "+15550101503": {"sip": "overloaded"},
    "+15550101603": {"sip": "decline"},
    "+15550101408": {"sip": "no_answer"},
    "+15550101487": {"sip": "ring_forever"},
    "+15550101200": {"sip": "answer", "sip-ring-ms": 3000},
    "+15550101299": {"sip": "hangup"},
    "+15550101310": {"sip": "answer", "media": "echo"},
    "+15550101311": {"sip": "answer", "media": "silence"},
}
PARAM_MAXIMA: dict[str, float] = {
    "delay-ms": 60_000,
    "hold-s": 600,
    "retry-after": 86_400,
    "sip-ring-ms": 600_000,
    "sip-answer-ms": 600_000,
    "no-answer-ms": 600_000,
    "hangup-after-ms": 3_600_000,
    "rtp-timeout-s": 3_600,
    "transfer-after-ms": 3_600_000,
}
"""The largest value each timing parameter takes (README, "Outcomes and faults"): a client must not be
able to park the mock's resources for longer. A larger value is a 400 naming the bound."""
LATENCY_MAX_MS = 60_000.0
"""The largest latency a policy may give (fixed, uniform's max, lognormal's median); draws are capped there."""
_PARAMS = frozenset(PARAM_MAXIMA)
MEDIA_PLANS = ("greeting", "greeting-loop", "echo", "silence")
"""What the agent sends once the call is answered (README, "Media")."""
DTMF_DIGITS = "0123456789*#ABCD"


SERVER_DEFAULT = "server-default"
"""The source named in the journal when no source decided."""


@dataclass
class Decision:
    """The HTTP outcome of one request, the SIP plan of its call, and where each came from.

    ``None`` means not decided yet: each source fills only what is still ``None``.
    """

    outcome: str | None = None
    reason: str | None = None
    sip: str | None = None
    sip_reason: str | None = None
    params: dict[str, float] = field(default_factory=dict)
    media: dict[str, str] = field(default_factory=dict)
    """The call's media plan and hang-up digit (``media``, ``hangup-digit``)."""
    delay_ms: float = 0.0
    """Latency added before answering (from delay-ms, the slow outcome, or a latency distribution)."""
    settings_version: int = -1
    """The store's settings version it was decided under: the agents book is read at the same version, so a
    shared store (Redis) is asked once per request."""

    def journal_reason(self) -> str:
        """Why, as the journal says it: the HTTP outcome's source, and the SIP plan's when one was chosen."""
        http = self.reason or SERVER_DEFAULT
        return http if self.sip_reason is None else f"{http}; sip={self.sip or 'answer'} ({self.sip_reason})"

    def plan(self) -> dict[str, Any] | None:
        """The per-call SIP plan stored with the call for the SIP endpoint; None for the server's default."""
        if self.sip_reason is None and not self.params and not self.media:
            return None
        keep = {k: v for k, v in self.params.items()
                if k.startswith(("sip-", "no-answer", "hangup", "rtp-", "transfer"))}
        return {"plan": self.sip or "answer", "reason": self.sip_reason or SERVER_DEFAULT, **keep, **self.media}


def parse_prefer(value: str) -> dict[str, str]:
    """``Prefer`` preferences (RFC 7240): comma- or semicolon-separated ``name=value`` pairs."""
    out = {}
    for part in value.replace(";", ",").split(","):
        name, _, val = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = val.strip().strip('"')
    return out


def _check(name: str, value: str, field_name: str) -> None:
    known = HTTP_OUTCOMES if name == "outcome" else SIP_PLANS
    if value not in known:
        raise ApiError(400, "validation_error",
                       f"{field_name}: {name}={value!r} is not known; use one of {', '.join(known)}",
                       field=field_name)


def _params(source: dict[str, Any], field_name: str) -> dict[str, float]:
    out = {}
    for key in _PARAMS & source.keys():
        try:
            value = float(source[key])
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ApiError(400, "validation_error", f"{field_name}: {key} must be a number >= 0", field=field_name)
        if value > PARAM_MAXIMA[key]:
            raise ApiError(400, "validation_error",
                           f"{field_name}: {key}={value:g} is over its maximum of {PARAM_MAXIMA[key]:g}",
                           field=field_name)
        out[key] = value
    return out


def from_spec(spec: dict[str, Any], reason: str, field_name: str, decision: Decision) -> None:
    """Fill the parts of ``decision`` that ``spec`` names and that are still at their defaults."""
    if "outcome" in spec and decision.reason is None:
        _check("outcome", str(spec["outcome"]), field_name)
        decision.outcome, decision.reason = str(spec["outcome"]), reason
    if "sip" in spec and decision.sip_reason is None:
        _check("sip", str(spec["sip"]), field_name)
        decision.sip, decision.sip_reason = str(spec["sip"]), reason
    for key, value in _params(spec, field_name).items():
        decision.params.setdefault(key, value)
    if "media" in spec:
        if spec["media"] not in MEDIA_PLANS:
            raise ApiError(400, "validation_error", f"{field_name}: media={spec['media']!r} is not known; use one "
                           f"of {', '.join(MEDIA_PLANS)}", field=field_name)
        decision.media.setdefault("media", str(spec["media"]))
    if "hangup-digit" in spec:
        digit = str(spec["hangup-digit"]).upper()
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ApiError(400, "validation_error", f"{field_name}: hangup-digit={spec['hangup-digit']!r} is not "
                           "a DTMF digit (0-9, *, #, A-D)", field=field_name)
        decision.media.setdefault("hangup-digit", digit)


# --- seeded draws -------------------------------------------------------------------------

def unit(seed: int, stream: str, n: int) -> float:
    """The n-th number in [0, 1) of a stream: a hash, so any process drawing number n gets the same."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{n}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick(rates: dict[str, float], u: float) -> str | None:
    """The outcome whose cumulative share covers ``u`` (None: no fault this time)."""
    edge = 0.0
    for name, rate in rates.items():
        edge += rate
        if u < edge:
            return name
    return None


def latency_ms(spec: dict[str, Any] | None, u: float) -> float:
    """A latency from ``{"dist": "fixed"|"uniform"|"lognormal", ...}`` at quantile ``u``."""
    if not spec:
        return 0.0
    dist = spec.get("dist", "fixed")
    if dist == "fixed":
        value = _latency_number(spec, "ms", 0)
    elif dist == "uniform":
        low, high = _latency_number(spec, "min_ms", 0), _latency_number(spec, "max_ms", 0)
        if high < low:
            raise ApiError(400, "validation_error", "latency: max_ms must be at least min_ms", field="latency")
        value = low + (high - low) * u
    elif dist == "lognormal":
        # median * exp(sigma * inverse-normal(u)); u is kept off 0 and 1 so the tails stay finite.
        from statistics import NormalDist

        median, sigma = _latency_number(spec, "median_ms", 0), _latency_number(spec, "sigma", 0.5, maximum=5.0)
        u = min(max(u, 1e-9), 1 - 1e-9)
        value = median * math.exp(sigma * NormalDist().inv_cdf(u))
    else:
        raise ApiError(400, "validation_error", f"latency dist {dist!r} is not fixed, uniform or lognormal",
                       field="latency")
    return min(value, LATENCY_MAX_MS)


def _latency_number(spec: dict[str, Any], key: str, default: float, maximum: float = LATENCY_MAX_MS) -> float:
    raw = spec.get(key, default)
    value = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else math.nan
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, "validation_error", f"latency: {key} must be a number >= 0, got {raw!r}", field="latency")
    if value > maximum:
        raise ApiError(400, "validation_error", f"latency: {key}={value:g} is over its maximum of {maximum:g}",
                       field="latency")
    return value


def validate_policy(policy: dict[str, Any]) -> dict[str, Any]:
    """Check a global policy document; returns it normalised."""
    if not isinstance(policy, dict):
        raise ApiError(422, "validation_error", "policy must be an object", field="/")
    seed = policy.get("seed", 0)
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ApiError(422, "validation_error", "seed must be an integer", field="/seed")
    out: dict[str, Any] = {"seed": seed}
    for side, known in (("http", HTTP_OUTCOMES), ("sip", SIP_PLANS)):
        part = policy.get(side) or {}
        rates = part.get("rates") or {}
        if not isinstance(rates, dict) or any(k not in known for k in rates):
            raise ApiError(422, "validation_error", f"{side}.rates keys must be among {', '.join(known)}",
                           field=f"/{side}/rates")
        if any(not isinstance(v, (int, float)) or not 0 <= v <= 1 for v in rates.values()) or sum(
                rates.values()) > 1 + 1e-9:
            raise ApiError(422, "validation_error", f"{side}.rates must be shares from 0 to 1 that sum to at most 1",
                           field=f"/{side}/rates")
        latency = part.get("latency")
        if latency is not None:
            latency_ms(latency, 0.5)  # raises on a bad distribution
        out[side] = {"rates": rates, "latency": latency}
    return out


# --- the precedence walk ------------------------------------------------------------------

ScenarioTaker = Callable[[Callable[[dict[str, Any], dict[str, Any]], bool]], "tuple[int, dict[str, Any]] | None"]


def decide(*, default_outcome: str, prefer: str | None, fields: dict[str, Any], scenarios_live: bool,
           take_scenario: ScenarioTaker, policy: dict[str, Any] | None, next_draw: Callable[[], int]) -> Decision:
    """Walk the sources in precedence order for one request.

    ``fields`` are the request's match fields (:data:`MATCH_FIELDS`). ``take_scenario`` consumes one use of
    the oldest live scenario its predicate accepts (a store operation, so workers never share a use);
    ``next_draw`` numbers the seeded draws across workers.
    """
    decision = Decision()
    if prefer:
        from_spec(parse_prefer(prefer), "header:Prefer", "Prefer", decision)
        if "delay-ms" in decision.params and decision.outcome != "slow":
            decision.delay_ms = decision.params["delay-ms"]
    if scenarios_live:
        # A scenario is used (and so consumed) only when it decides something a higher source has not.
        def applies(match: dict[str, Any], spec: dict[str, Any]) -> bool:
            useful = ("outcome" in spec and decision.reason is None) or ("sip" in spec and decision.sip_reason is None)
            return useful and all(fields.get(k) == v for k, v in match.items())

        taken = take_scenario(applies)
        if taken is not None:
            sid, spec = taken
            from_spec(spec, f"scenario:{sid}", "scenario", decision)
    caller = fields.get("from_number")
    magic = MAGIC_NUMBERS.get(caller) if isinstance(caller, str) else None
    if magic:
        from_spec(magic, f"magic-number:{caller}", "from_number", decision)
    if policy:
        draw(policy, next_draw(), decision)
    if decision.outcome is None:
        decision.outcome = default_outcome
    return decision


def draw(policy: dict[str, Any], n: int, decision: Decision) -> None:
    """Draw number ``n`` of the seeded policy: the same seed gives the same sequence in any worker."""
    seed = policy["seed"]
    where = f"seeded:{seed}#{n}"
    http, sip = policy.get("http") or {}, policy.get("sip") or {}
    picked = pick(http.get("rates") or {}, unit(seed, "http", n))
    if picked and decision.reason is None:
        decision.outcome, decision.reason = picked, where
    picked_sip = pick(sip.get("rates") or {}, unit(seed, "sip", n))
    if picked_sip and decision.sip_reason is None:
        decision.sip, decision.sip_reason = picked_sip, where
    if http.get("latency") and not decision.delay_ms:
        decision.delay_ms = latency_ms(http["latency"], unit(seed, "http-latency", n))
    if sip.get("latency") and "sip-answer-ms" not in decision.params:
        decision.params["sip-answer-ms"] = round(latency_ms(sip["latency"], unit(seed, "sip-latency", n)), 3)
        if decision.sip_reason is None:
            decision.sip_reason = where
