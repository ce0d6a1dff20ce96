"""The agents document as typed, read-only values, and the lookups every door needs.

One document (contract ``contracts/agents.schema.json``) says, per ``model_id``,
where webhooks go, which pre-call actions run and which limits apply, and per
workspace which secret signs the webhooks. It is stored in the shared store, so
every HTTP worker and the SIP process read the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_WEBHOOK_SECRET = "synthflow-mock-webhook-secret"
"""Signs webhooks when neither the workspace nor the document sets a secret (README, "Webhooks")."""


@dataclass(frozen=True)
class Action:
    """A custom action run before the agent answers (Synthflow: ``run_action_before_call_start``)."""

    url: str
    name: str = ""
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    timeout_s: float = 10.0

    @property
    def label(self) -> str:
        return self.name or f"{self.method} {self.url}"


@dataclass(frozen=True)
class InboundWebhook:
    url: str
    timeout_s: float = 10.0
    retries: int = 3
    on_failure: str = "default_agent"
    """After the last failed attempt: ``default_agent`` keeps the call's agent, ``disconnect`` refuses the call."""


@dataclass(frozen=True)
class Limits:
    concurrency: int | None = None
    caps: float | None = None

    def __bool__(self) -> bool:
        return self.concurrency is not None or self.caps is not None


@dataclass(frozen=True)
class Agent:
    model_id: str
    workspace_id: str | None = None
    external_webhook_url: str | None = None
    inbound_webhook: InboundWebhook | None = None
    pre_call_actions: tuple[Action, ...] = ()
    limits: Limits = Limits()
    greeting: str | None = None
    timezone: str | None = None
    transfer_to: str | None = None
    transfer_headers: dict[str, str] = field(default_factory=dict)

    @property
    def steps_before_answer(self) -> bool:
        """Whether the SIP answer waits for an inbound webhook or a pre-call action."""
        return self.inbound_webhook is not None or bool(self.pre_call_actions)


@dataclass(frozen=True)
class Workspace:
    workspace_id: str
    webhook_secret: str | None = None
    limits: Limits = Limits()


@dataclass(frozen=True)
class LimitKey:
    """One limit that applies to a call: ``agent:<model_id>`` or ``workspace:<id>``."""

    key: str
    concurrency: int | None
    caps: float | None


@dataclass(frozen=True)
class AgentBook:
    agents: dict[str, Agent] = field(default_factory=dict)
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET

    def __bool__(self) -> bool:
        return bool(self.agents or self.workspaces)

    def agent(self, model_id: str | None) -> Agent | None:
        return self.agents.get(model_id) if model_id is not None else None

    def workspace_of(self, model_id: str | None, workspace_id: str | None) -> str | None:
        """The call's workspace: the one the prepare named, else its agent's."""
        if workspace_id:
            return workspace_id
        agent = self.agent(model_id)
        return agent.workspace_id if agent else None

    def secret_for(self, model_id: str | None, workspace_id: str | None) -> str:
        """The secret that signs this call's webhooks: its workspace's, else the document's."""
        ws = self.workspaces.get(self.workspace_of(model_id, workspace_id) or "")
        return ws.webhook_secret if ws is not None and ws.webhook_secret else self.webhook_secret

    def limits_for(self, model_id: str | None, workspace_id: str | None) -> list[LimitKey]:
        """Every limit a call of this agent and workspace counts against (agent first)."""
        found = []
        agent = self.agent(model_id)
        if agent is not None and agent.limits:
            found.append(LimitKey(f"agent:{model_id}", agent.limits.concurrency, agent.limits.caps))
        ws_id = self.workspace_of(model_id, workspace_id)
        ws = self.workspaces.get(ws_id or "")
        if ws is not None and ws.limits:
            found.append(LimitKey(f"workspace:{ws_id}", ws.limits.concurrency, ws.limits.caps))
        return found


def _limits(doc: dict[str, Any]) -> Limits:
    return Limits(doc.get("concurrency"), doc.get("caps"))


def _action(doc: dict[str, Any]) -> Action:
    return Action(url=doc["url"], name=doc.get("name", ""), method=doc.get("method", "POST"),
                  headers=dict(doc.get("headers", {})), body=doc.get("body"), timeout_s=float(doc.get("timeout_s", 10)))


def book_from_document(doc: dict[str, Any] | None) -> AgentBook:
    """Build the book from a document already checked against ``agents.schema.json``."""
    if not doc:
        return AgentBook()
    agents = {}
    for model_id, a in doc.get("agents", {}).items():
        inbound = a.get("inbound_webhook")
        agents[model_id] = Agent(
            model_id=model_id, workspace_id=a.get("workspace_id"), external_webhook_url=a.get("external_webhook_url"),
            inbound_webhook=InboundWebhook(inbound["url"], float(inbound.get("timeout_s", 10)),
                                           int(inbound.get("retries", 3)), inbound.get("on_failure", "default_agent"))
            if inbound else None,
            # Synthflow runs an action before the call only when it is marked so; the mock's list is that list,
            # so an action marked false is kept in the document but not run.
            pre_call_actions=tuple(_action(x) for x in a.get("pre_call_actions", ())
                                   if x.get("run_action_before_call_start", True)),
            limits=_limits(a), greeting=a.get("greeting"), timezone=a.get("timezone"),
            transfer_to=(a.get("transfer") or {}).get("to"),
            transfer_headers=dict((a.get("transfer") or {}).get("headers") or {}))
    workspaces = {ws_id: Workspace(ws_id, w.get("webhook_secret"), _limits(w))
                  for ws_id, w in doc.get("workspaces", {}).items()}
    return AgentBook(agents, workspaces, doc.get("webhook_secret") or DEFAULT_WEBHOOK_SECRET)


def masked(doc: dict[str, Any] | None) -> dict[str, Any]:
    """The document as ``GET /_mock/agents`` shows it: secrets replaced by their length (never echoed)."""
    if not doc:
        return {}
    out = dict(doc)
    if "webhook_secret" in out:
        out["webhook_secret"] = f"<set, {len(doc['webhook_secret'])} characters>"
    if "workspaces" in out:
        out["workspaces"] = {k: {**w, **({"webhook_secret": f"<set, {len(w['webhook_secret'])} characters>"}
                                         if "webhook_secret" in w else {})} for k, w in doc["workspaces"].items()}
    return out


class BookCache:
    """This process's copy of the stored agents document, re-read only when the store's settings moved
    (a memory load on the hot path)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._version = -1
        self._book = AgentBook()

    def get(self, version: int | None = None) -> AgentBook:
        """The book at the store's settings ``version`` (read now when not given)."""
        if version is None:
            version = self.store.shared.version()
        if version != self._version:
            self._book, self._version = book_from_document(self.store.agents_document()), version
        return self._book
