"""Application secrets and the release command, as a deploy uses them.

- `require` reads the values of `service.secrets` (ZDD_SECRET_<NAME>, else the keyring) and
  refuses, before anything changes, naming every missing one and how to set it.
- `release_step` is the engine's `before_changes`: the release command once, on the first
  host, in a one-off container of the new image; a failure refuses the rollout.
- `secrets_view` is what `status` shows per host: the names and fingerprints its container was
  started with, against the current values (drift).
Values go only to the runtimes (into a container's environment); output of the app's own
release command is scrubbed of them before it is shown.
"""

from __future__ import annotations

import asyncio
import secrets as random
import shlex
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from zdd_tui.app_secrets import SecretEnv, fingerprint, key_id, parse_label, secret_env
from zdd_tui.errors import UsageError
from zdd_tui.rollout.engine import ChangesRefused, LogFn
from zdd_tui.rollout.interfaces import HostRuntime, ReleaseHost
from zdd_tui.secrets import SECRET_ENV_PREFIX, CredentialsError, get_app_secrets, secrets_key

if TYPE_CHECKING:
    from zdd_tui.project.open import Project
    from zdd_tui.project.status import HostStatus
    from zdd_tui.rollout.events import Plan

RELEASE_TAIL = 10  # lines of a failed release command's output in the refusal


def _values(context: str, names: tuple[str, ...]) -> tuple[dict[str, str], list[str], str]:
    """(values, missing, why the keyring could not be read or "")."""
    try:
        values, missing = get_app_secrets(context, names)
        return values, missing, ""
    except CredentialsError as exc:
        # No keyring (CI): the environment's ZDD_SECRET_* are all there is.
        from zdd_tui.secrets import app_secret_env

        values = {n: v for n in names if (v := app_secret_env(n)) is not None}
        return values, [n for n in names if n not in values], exc.message


def _key(context: str) -> bytes:
    try:
        key = secrets_key(context)
    except CredentialsError:
        key = None
    # No keyring and no ZDD_SECRETS_KEY: a key for this run only. The hosts' fingerprints then
    # name a key no one holds; status says "cannot compare" rather than guess.
    return key or random.token_bytes(32)


async def require(project: Project) -> SecretEnv:
    """The values of service.secrets; UsageError naming every missing one (nothing has changed)."""
    names = project.config.service.secrets
    if not names:
        return SecretEnv()
    context = project.context
    values, missing, why = await asyncio.to_thread(_values, context, names)
    if missing:
        s = "s" if len(missing) > 1 else ""
        reason = f" (the keyring could not be read: {why})" if why else ""
        raise UsageError(
            f"missing secret{s} for service.secrets: {', '.join(missing)}{reason}; nothing was changed",
            "; ".join(f"`zdd-tui secret set {n} --context {context}` or {SECRET_ENV_PREFIX}{n} in CI"
                      for n in missing),
        )
    key = await asyncio.to_thread(_key, context)
    return secret_env(key, values)


def give(runtimes: Mapping[str, HostRuntime], secrets: SecretEnv | None) -> None:
    """Hand the secrets to every runtime that takes them (None: take them back)."""
    for rt in runtimes.values():
        if isinstance(rt, ReleaseHost):
            rt.set_secrets(secrets)


def deploy_notes(config: Any, plan: Plan) -> list[str]:
    """What the plan preview says about secrets and the release command."""
    notes = []
    if config.service.secrets:
        notes.append(f"containers get the secrets {', '.join(config.service.secrets)} (values never shown)")
    if config.deploy.release_command and plan.hosts and plan.action in ("deploy", "resume"):
        notes.append(f"release command on {plan.hosts[0].name} before any host changes: "
                     f"{shlex.join(config.deploy.release_command)}")
    return notes


def release_step(project: Project, plan: Plan, runtimes: Mapping[str, HostRuntime], secrets: SecretEnv,
                 env: dict[str, str] | None) -> Callable[[LogFn], Awaitable[None]] | None:
    """The release command as the engine's before_changes hook; None when there is none to run."""
    argv = list(project.config.deploy.release_command)
    if not argv or not plan.hosts or plan.action not in ("deploy", "resume"):
        return None
    host = plan.hosts[0].name

    async def step(log: LogFn) -> None:
        rt: Any = runtimes[host]
        if not isinstance(rt, ReleaseHost):
            raise ChangesRefused(f"{host}'s runtime cannot run the release command")
        await log(host, f"release command in a one-off container of {plan.to_tag}: {shlex.join(argv)}", "info")
        pending: list[asyncio.Task] = []

        def on_line(line: str) -> None:
            pending.append(asyncio.ensure_future(log(host, "release | " + secrets.scrub(line), "info")))

        try:
            code, lines = await rt.release(plan.image_ref, argv, dict(env or {}), on_line=on_line)
        except Exception as exc:  # noqa: BLE001 - the host or the agent failed: nothing has changed
            await asyncio.gather(*pending)
            raise ChangesRefused(f"the release command could not run on {host}",
                                 secrets.scrub(f"{type(exc).__name__}: {exc}")) from None
        await asyncio.gather(*pending)
        if code != 0:
            tail = [secrets.scrub(x) for x in lines if x.strip()][-RELEASE_TAIL:]
            await log(host, f"release command exited with {code}", "error")
            raise ChangesRefused(f"the release command exited with {code} on {host}", " | ".join(tail))
        await log(host, "release command succeeded", "info")

    return step


def _current(context: str, names: tuple[str, ...]) -> tuple[bytes | None, dict[str, str]]:
    """The fingerprint key and current values, as far as they can be read without prompting."""
    values, _missing, _why = _values(context, names)
    try:
        key = secrets_key(context, create=False)
    except CredentialsError:
        key = None
    return key, values


async def secrets_view(project: Project, hosts: Mapping[str, HostStatus]) -> dict[str, list[dict[str, Any]]]:
    """host -> [{name, fingerprint, state}] for the secrets its container was started with and
    those service.secrets asks for. state: same | changed (drift) | not set now | not in the
    container | cannot compare (another key, or the current value is unknown)."""
    wanted = project.config.service.secrets
    labels = {n: parse_label(h.container.secrets if h.container else None) for n, h in hosts.items()}
    if not wanted and not any(labels.values()):
        return {}
    seen = tuple(sorted({*wanted, *(name for lab in labels.values() if lab for name in lab.fingerprints)}))
    key, values = await asyncio.to_thread(_current, project.context, seen)
    out: dict[str, list[dict[str, Any]]] = {}
    for host, label in labels.items():
        if hosts[host].container is None:
            continue
        rows = []
        started = label.fingerprints if label else {}
        same_key = label is not None and key is not None and label.key_id == key_id(key)
        for name in sorted({*wanted, *started}):
            fp = started.get(name)
            now = values.get(name)
            if fp is None:
                state = "not in the container"
            elif name not in values:
                state = "not set now"
            elif not same_key or key is None or now is None:
                state = "cannot compare"
            else:
                state = "same" if fingerprint(key, now) == fp else "changed"
            rows.append({"name": name, "fingerprint": fp, "state": state})
        out[host] = rows
    return out


def secrets_lines(view: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """The text form of `secrets_view`, for `status`."""
    if not view:
        return []
    out = ["secrets (name: fingerprint the container started with; vs the current value):"]
    for host, rows in sorted(view.items()):
        parts = [f"{r['name']}:{r['fingerprint'] or '-'} {r['state'].upper() if r['state'] != 'same' else 'same'}"
                 for r in rows]
        out.append(f"  {host:<12} " + ("; ".join(parts) or "none"))
    return out
