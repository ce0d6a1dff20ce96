"""Sending webhooks and running pre-call steps, off every hot path.

One daemon thread runs an event loop of its own with one ``httpx.AsyncClient``;
the SIP loop hands it work and gets results back with ``call_soon_threadsafe``.
A receiver that is slow or down costs a pending task here, never a SIP or HTTP
answer. Every attempt is journaled (kind ``webhook``) with its status and latency.

Retries (README, "Webhooks"): a post-call webhook that gets no 2xx (an error
status, a timeout, a refused connection) is sent again after ``backoff_s``,
then twice that, up to ``retries`` more times; the last failure is journaled
and put on the call's timeline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from mock_server import metrics
from mock_server.agents.book import Action, Agent, BookCache, InboundWebhook
from mock_server.core import jsonio
from mock_server.core.calls import CallEvent
from mock_server.core.config import MockConfig
from mock_server.core.journal import body_text, redact_headers, redact_query
from mock_server.core.store import Store
from mock_server.server.loops import new_event_loop
from mock_server.webhooks import payloads, signature, templates
from mock_server.webhooks.context import CallContext

USER_AGENT = "synthflow-mock webhooks"


@dataclass
class BeforeAnswer:
    """What the inbound webhook and the pre-call actions decided for a call about to be answered."""

    model_id: str | None
    overridden: bool = False
    disconnect: str | None = None
    """Why the call must be refused (the inbound webhook said so, or failed with ``on_failure: disconnect``)."""
    prompt_variables: dict[str, Any] = field(default_factory=dict)
    executed_actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Attempt:
    status: int | None
    latency_ms: float
    body: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Webhooks:
    """The webhook worker of one SIP process (started on first use)."""

    def __init__(self, store: Store, config: MockConfig, books: BookCache) -> None:
        self.store, self.config, self.books = store, config, books
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._start_lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = threading.Event()
        self._idle.set()

    # -- public face (any thread) -------------------------------------------------------
    def post_call(self, ctx: CallContext, stored: concurrent.futures.Future[None]) -> None:
        """Send the post-call webhook once the call's last events (``stored``) are in the store."""
        self._submit(self._post_call(ctx, stored))

    def before_answer(self, ctx: CallContext, agent: Agent, done: Callable[[BeforeAnswer], None],
                      loop: asyncio.AbstractEventLoop) -> None:
        """Run the inbound webhook and the pre-call actions, then call ``done`` on ``loop``."""
        async def run() -> None:
            try:
                result = await self._before_answer(ctx, agent)
            except Exception as exc:  # a bug here must not leave the INVITE waiting forever
                result = BeforeAnswer(ctx.model_id, disconnect=f"pre-call steps failed: {type(exc).__name__}: {exc}")
            loop.call_soon_threadsafe(done, result)
        self._submit(run())

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once no delivery is pending (tests, and a graceful stop)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Let pending deliveries finish for up to ``timeout`` s, then stop."""
        if self._loop is None:
            return
        self._idle.wait(timeout)
        loop = self._loop

        async def stop() -> None:
            for task in list(self._tasks):
                task.cancel()
            if self._client is not None:
                await self._client.aclose()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._loop = None

    # -- the worker's loop -------------------------------------------------------------
    def _submit(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._ensure_started()
        self._idle.clear()
        loop.call_soon_threadsafe(self._track, coro)

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="synthflow-mock-webhooks", daemon=True)
                self._thread.start()
                self._client = asyncio.run_coroutine_threadsafe(self._new_client(), loop).result(10)
                self._loop = loop
            return self._loop

    @staticmethod
    async def _new_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(headers={"User-Agent": USER_AGENT}, follow_redirects=False, trust_env=False,
                                 limits=httpx.Limits(max_connections=256, max_keepalive_connections=32))

    # -- one HTTP attempt, journaled ------------------------------------------------------
    async def _attempt(self, event: str, ctx: CallContext, n: int, method: str, url: str, *, json_body: Any = None,
                       content: bytes | None = None, headers: dict[str, str], timeout_s: float) -> Attempt:
        assert self._client is not None
        started = time.perf_counter()
        body = content if content is not None else jsonio.dumps(json_body)
        send_headers = {"Content-Type": "application/json", **headers} if method != "GET" else dict(headers)
        try:
            resp = await self._client.request(method, url, content=body if method != "GET" else None,
                                              headers=send_headers, timeout=timeout_s)
            text = resp.text
            try:
                parsed: Any = resp.json() if text else None
            except ValueError:
                parsed = None
            attempt = Attempt(resp.status_code, (time.perf_counter() - started) * 1000, parsed)
            answer_text = text
        except httpx.TimeoutException:
            attempt = Attempt(None, (time.perf_counter() - started) * 1000, error=f"no answer within {timeout_s:g} s")
            answer_text = ""
        except httpx.HTTPError as exc:
            attempt = Attempt(None, (time.perf_counter() - started) * 1000,
                              error=f"{type(exc).__name__}: {exc or 'connection failed'}")
            answer_text = ""
        metrics.WEBHOOK_ATTEMPTS.labels(event, "delivered" if attempt.ok else "failed").inc()
        metrics.WEBHOOK_DURATION.labels(event).observe(attempt.latency_ms / 1000)
        await self._journal(event, ctx, n, method, url, send_headers, body, attempt, answer_text)
        return attempt

    async def _journal(self, event: str, ctx: CallContext, n: int, method: str, url: str, headers: dict[str, str],
                       body: bytes, attempt: Attempt, answer_text: str,
                       timeline: CallEvent | None = None) -> None:
        limit, salt = self.config.journal_body_limit, self.config.redaction_salt
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        request_text, cut = body_text(body, limit)
        entry = {
            "time": time.time(), "kind": "webhook", "event": event, "call_id": ctx.call_id, "method": method,
            "url": f"{parts.scheme}://{parts.netloc}{parts.path}", "path": parts.path or "/",
            "query": redact_query(query, salt), "attempt": n, "status": attempt.status,
            "latency_ms": round(attempt.latency_ms, 2), "error": attempt.error,
            "outcome": "delivered" if attempt.ok else "failed",
            "headers": redact_headers({k.lower(): v for k, v in headers.items()}, salt),
            "body": request_text, "body_truncated": cut, "response_body": answer_text[:limit],
        }
        # A failing journal store is reported by the SIP side in /_mock/health; delivery goes on.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.apply, [entry], [timeline] if timeline else [])

    def _signed(self, ctx: CallContext) -> dict[str, str]:
        secret = self.books.get().secret_for(ctx.model_id, ctx.workspace_id)
        return {signature.HEADER: signature.sign(secret, ctx.call_id)}

    # -- post-call webhook ----------------------------------------------------------------
    async def _post_call(self, ctx: CallContext, stored: concurrent.futures.Future[None]) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(stored), 30)
        call = await asyncio.to_thread(self.store.get_call, ctx.call_id)
        if call is None:
            return
        agent = self.books.get().agent(call.get("model_id") or ctx.model_id)
        url = ctx.webhook_url or (agent.external_webhook_url if agent else None)
        if not url:
            return
        ctx.model_id = call.get("model_id") or ctx.model_id
        body = payloads.post_call(call, ctx, call.get("timezone") or (agent.timezone if agent else None))
        retries, backoff = self.config.webhook_retries, self.config.webhook_backoff_s
        attempt = None
        for n in range(1, retries + 2):
            attempt = await self._attempt("post_call", ctx, n, "POST", url, json_body=body, headers=self._signed(ctx),
                                          timeout_s=self.config.webhook_timeout_s)
            if attempt.ok:
                break
            if n <= retries:
                await asyncio.sleep(backoff * 2 ** (n - 1))
        assert attempt is not None
        detail = {"url": url, "attempts": n, "status": attempt.status, "delivered": attempt.ok}
        if attempt.error:
            detail["error"] = attempt.error
        event = CallEvent(ctx.call_id, int(time.time() * 1000),
                          "webhook_delivered" if attempt.ok else "webhook_failed", None, detail)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.apply, [], [event])

    # -- before the answer ------------------------------------------------------------------
    async def _before_answer(self, ctx: CallContext, agent: Agent) -> BeforeAnswer:
        result = BeforeAnswer(ctx.model_id, prompt_variables=dict(ctx.x_headers))
        if agent.inbound_webhook is not None:
            await self._inbound(ctx, agent.inbound_webhook, result)
            if result.disconnect is not None:
                return result
            if result.overridden:
                agent = self.books.get().agent(result.model_id) or Agent(result.model_id or "")
                ctx.model_id = result.model_id
        for action in agent.pre_call_actions:
            await self._action(ctx, action, result)
        return result

    async def _inbound(self, ctx: CallContext, hook: InboundWebhook, result: BeforeAnswer) -> None:
        body = payloads.call_inbound(ctx)
        last = "no attempt"
        for n in range(1, hook.retries + 2):
            attempt = await self._attempt("call_inbound", ctx, n, "POST", hook.url, json_body=body,
                                          headers=self._signed(ctx), timeout_s=hook.timeout_s)
            if attempt.ok and isinstance(attempt.body, dict):
                inner = attempt.body.get("call_inbound")
                if isinstance(inner, dict) and "override_model_id" in inner:
                    override = inner["override_model_id"]
                    if isinstance(override, str) and override:
                        result.model_id, result.overridden = override, True
                    return  # "" or null: keep the agent
                result.disconnect = "the inbound webhook answered without override_model_id ({}): disconnect"
                return
            last = attempt.error or (f"HTTP {attempt.status}" if not attempt.ok else "the answer is not a JSON object")
        if hook.on_failure == "disconnect":
            result.disconnect = f"the inbound webhook failed {hook.retries + 1} time(s) ({last}); on_failure=disconnect"

    async def _action(self, ctx: CallContext, action: Action, result: BeforeAnswer) -> None:
        variables = ctx.variables()
        missing: list[str] = []
        url = templates.render(action.url, variables, missing)
        rendered = templates.render(action.body, variables, missing)
        headers = {k: templates.render(v, variables, missing) for k, v in action.headers.items()}
        content = rendered.encode() if isinstance(rendered, str) else None
        attempt = await self._attempt("pre_call_action", ctx, 1, action.method, url,
                                      json_body=rendered if rendered is not None else {}, content=content,
                                      headers=headers, timeout_s=action.timeout_s)
        record: dict[str, Any] = {"action": action.label, "when": "before_call_start", "status": attempt.status,
                                  "latency_ms": round(attempt.latency_ms, 2)}
        if attempt.error:
            record["error"] = attempt.error
        if missing:
            record["missing_variables"] = sorted(set(missing))
        if attempt.ok and isinstance(attempt.body, dict):
            result.prompt_variables.update(attempt.body)
            record["variables"] = sorted(attempt.body)
        result.executed_actions.append(record)
