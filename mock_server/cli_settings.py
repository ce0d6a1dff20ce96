"""Where each serve option comes from: a flag, else ``SYNTHFLOW_MOCK_<OPTION>``, else the ``--config`` file,
else its default.

The environment variable of ``--http-port`` is ``SYNTHFLOW_MOCK_HTTP_PORT``; the file's key is
``http-port`` (or ``http_port``). Repeatable options take a comma-separated list in the
environment and a TOML array in the file; switches take true/false (or 1/0, yes/no, on/off).
The config file itself comes from ``--config`` or ``SYNTHFLOW_MOCK_CONFIG``. A value of the
wrong form is one line naming its key and the expected form (:class:`SettingsError`).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

ENV_PREFIX = "SYNTHFLOW_MOCK_"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class SettingsError(Exception):
    """A setting of the wrong form: the message names it and says what it takes."""


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")]


def _long(action: argparse.Action) -> str:
    return next(o for o in action.option_strings if o.startswith("--"))[2:]


def env_name(action: argparse.Action) -> str:
    return ENV_PREFIX + _long(action).upper().replace("-", "_")


def _expected(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "true or false"
    if isinstance(action, argparse._AppendAction):
        return "a list of strings (comma-separated in the environment)"
    if action.choices:
        return "one of " + ", ".join(str(c) for c in action.choices)
    return {int: "an integer", float: "a number"}.get(action.type, "a string")  # type: ignore[arg-type]


def _convert(action: argparse.Action, raw: Any, where: str) -> Any:
    """``raw`` (a string from the environment, or a TOML value) as the option's value."""
    fail = SettingsError(f"{where}={raw!r}: expected {_expected(action)}")
    if isinstance(action, argparse._StoreTrueAction):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise fail
    if isinstance(action, argparse._AppendAction):
        if isinstance(raw, str):
            return [part.strip() for part in raw.split(",") if part.strip()]
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return list(raw)
        raise fail
    value = raw
    if action.type in (int, float):
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise fail
        try:
            value = action.type(raw)  # type: ignore[misc]
        except ValueError:
            raise fail from None
        if action.type is int and isinstance(raw, float) and not raw.is_integer():
            raise fail
    elif not isinstance(raw, str):
        raise fail
    if action.choices and value not in action.choices:
        raise fail
    return value


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise SettingsError(f"--config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"--config {path}: not valid TOML ({exc})") from None


def _given_flags(actions: list[argparse.Action], argv: Sequence[str]) -> set[str]:
    """Options named on the command line (the parser takes no abbreviations, so names match exactly)."""
    given = set()
    for action in actions:
        for option in action.option_strings:
            if any(arg == option or arg.startswith(option + "=") for arg in argv):
                given.add(action.dest)
    return given


def resolve(parser: argparse.ArgumentParser, argv: Sequence[str],
            environ: Mapping[str, str] | None = None) -> tuple[argparse.Namespace, dict[str, str]]:
    """Parse ``argv`` for ``parser`` (a serve parser) over the environment and the config file.

    Returns the options and, for each, where its value came from: ``flag``, ``env NAME``,
    ``file PATH``, or ``default``.
    """
    environ = os.environ if environ is None else environ
    actions = _options(parser)
    values: dict[str, Any] = {a.dest: a.default for a in actions}
    sources = {a.dest: "default" for a in actions}
    first = parser.parse_args(argv)  # --config, and any error in the flags, before the layers
    config_path = first.config or environ.get(ENV_PREFIX + "CONFIG") or None
    if config_path:
        by_key = {}
        for action in actions:
            by_key[_long(action)] = by_key[_long(action).replace("-", "_")] = action
        document = _read_file(config_path)
        scenarios = document.pop("scenarios", [])
        if not isinstance(scenarios, list) or not all(isinstance(s, dict) for s in scenarios):
            raise SettingsError(f"--config {config_path}: scenarios is an array of tables ([[scenarios]])")
        values["scenarios"] = scenarios
        for key, raw in document.items():
            action = by_key.get(key)
            if action is None:
                raise SettingsError(f"--config {config_path}: unknown key {key!r}; keys are the serve flags "
                                    "without their dashes, e.g. http-port")
            values[action.dest] = _convert(action, raw, f"{config_path}: {key}")
            sources[action.dest] = f"file {config_path}"
    for action in actions:
        name = env_name(action)
        if name in environ:
            values[action.dest] = _convert(action, environ[name], name)
            sources[action.dest] = f"env {name}"
    given = _given_flags(actions, argv)
    for dest in given:
        values.pop(dest, None)  # the parser fills these from the command line
        sources[dest] = "flag"
    namespace = argparse.Namespace(**values, config=first.config)
    if not hasattr(namespace, "scenarios"):
        namespace.scenarios = []
    for dest in given:  # an appending flag starts from an empty list, not from the layers below
        action = next(a for a in actions if a.dest == dest)
        if isinstance(action, argparse._AppendAction):
            setattr(namespace, dest, [])
    args = parser.parse_args(argv, namespace=namespace)
    return args, sources


def show(args: argparse.Namespace, sources: dict[str, str]) -> str:
    """The effective settings, one a line, with where each came from; secrets are not shown."""
    lines = []
    width = max(len(dest) for dest in sources)
    if getattr(args, "scenarios", None):
        lines.append(f"{'scenarios':<{width}}  {len(args.scenarios)} queued at start{'':<10}  file {args.config}")
    for dest in sorted(sources):
        value = getattr(args, dest)
        if value and ("token" in dest and dest != "admin_token_file"):
            value = "<set>"
        lines.append(f"{dest.replace('_', '-'):<{width}}  {value!r:<28}  {sources[dest]}")
    return "\n".join(lines)
