"""The host agent: HTTP endpoints for each local host, under the sandbox API server.

Not DigitalOcean paths: `/sandbox/hosts/...`, with the API's bearer token. `SandboxRuntime`
(zdd_tui/sandbox/runtime.py) is the client. JSON in and out; errors are DO-shaped
`{"id", "message"}` with 404 (no host, unknown image, no container), 409 (container already
running), 400 (bad input), 500 (the operation failed).

  GET    /sandbox/hosts                                   all hosts (name, address, ports, tag)
  GET    /sandbox/hosts/{name}                            one host
  POST   /sandbox/hosts/{name}/pull        {image_ref, auth} -> {ref, tag, digest}; {image_ref, present_only:
                                            true}: 404 unless already here (no registry); 403 when the
                                                         registry refuses the credentials
  GET    /sandbox/hosts/{name}/container                  -> container (404 when none)
  POST   /sandbox/hosts/{name}/container   {image_ref, env, secrets, secrets_label}  run -> container
                                                         (secrets: kept in the sandbox's memory only)
  POST   /sandbox/hosts/{name}/slots/{slot}  {image_ref, env, port, port_env, secrets, secrets_label}
                                                         (secrets: kept in the sandbox's memory only)
  POST   /sandbox/hosts/{name}/release     {image_ref, argv, env, secrets, bound_seconds} -> JSON
                                                         lines {"line"}..., then {"exit_code"}
  POST   /sandbox/hosts/{name}/container/stop {grace_seconds}
  GET    /sandbox/hosts/{name}/logs?tail=N[&since=EPOCH]  -> {lines: [...]}
  GET    /sandbox/hosts/{name}/state                      -> {files: [...]}
  GET    /sandbox/hosts/{name}/state/{file}               -> text (404 when absent)
  PUT    /sandbox/hosts/{name}/state/{file}               atomic replace
  POST   /sandbox/hosts/{name}/state/{file}?mode=create   201, or 409 when it exists
  POST   /sandbox/hosts/{name}/state/{file}?mode=append   one line
  DELETE /sandbox/hosts/{name}/state/{file}               204 (also when absent)
local-swap (the proxy and the slot containers, zdd_tui/sandbox/swap.py):
  GET    /sandbox/hosts/{name}/proxy                      -> {installed, running, pid, ports...}
  POST   /sandbox/hosts/{name}/proxy       {slot, service_port, proxy_port, slot_ports, port_env}
                                                         install (idempotent); 409 if the port is held
  POST   /sandbox/hosts/{name}/proxy/switch {slot}        the dynamic file replaced by rename; 204
  GET    /sandbox/hosts/{name}/slots                      -> {containers: [...]} running and stopped
  POST   /sandbox/hosts/{name}/slots/{slot} {image_ref, env, port, port_env} run -> container
  POST   /sandbox/hosts/{name}/slots/{slot}/stop {grace_seconds}   stop, keep it
  GET    /sandbox/hosts/{name}/slots/{slot}/in_flight     -> {in_flight: N} (ESTABLISHED to the port)
  GET    /sandbox/hosts/{name}/in_flight                  -> {in_flight: {a: N, b: N}} (one read, both)
  DELETE /sandbox/hosts/{name}/containers/{container}     204 (also when absent)
  POST   /sandbox/hosts/{name}/prune       {keep}         -> {removed: [names]}
  POST   /sandbox/hosts/{name}/reboot                     every process SIGKILLed, then resumed
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Callable

from aiohttp import web

from zdd_tui.sandbox.api import json_body
from zdd_tui.sandbox.hosts import HostError, HostManager
from zdd_tui.sandbox.swap import SwapBadRequest, SwapError

PREFIX = "/sandbox/hosts"


def _error(status: int, ident: str, message: str) -> web.Response:
    return web.json_response({"id": ident, "message": message}, status=status)


def _host_error(exc: HostError | SwapError) -> web.Response:
    ident = {404: "not_found", 409: "conflict", 400: "bad_request"}.get(exc.status, "server_error")
    return _error(exc.status, ident, str(exc))


def agent_routes(
    manager: HostManager,
    token: str | Callable[[], str],
    pull_refusal: Callable[[str | None], str | None] | None = None,
) -> list[web.RouteDef]:
    """The agent's routes, for `app.add_routes(...)` on the sandbox API's application.
    `pull_refusal(auth)` is the registry's answer to a pull's credentials (None: allowed)."""

    def authorized(request: web.Request) -> bool:
        expected = token() if callable(token) else token
        got = request.headers.get("Authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {expected}".encode())

    def handler(fn):
        async def wrapped(request: web.Request) -> web.StreamResponse:
            if not authorized(request):
                return _error(401, "unauthorized", "Unable to authenticate you.")
            try:
                return await fn(request)
            except (HostError, SwapError) as exc:
                return _host_error(exc)

        return wrapped

    def host(request: web.Request):
        return manager.get(request.match_info["name"])

    async def list_hosts(request):
        return web.json_response({"hosts": [h.info() for h in manager.hosts.values()]})

    async def get_host(request):
        return web.json_response({"host": host(request).info()})

    async def pull(request):
        body = await json_body(request)
        ref = body.get("image_ref")
        if not isinstance(ref, str) or not ref:
            return _error(400, "bad_request", "image_ref (string) is required")
        if body.get("present_only") is True:
            # Asks whether the image is here already; never contacts the registry.
            have = host(request).pulled().get(ref)
            if have is None:
                return _error(404, "not_found", f"{ref}: not on this host")
            return web.json_response({"ref": ref, "tag": have["tag"], "digest": have["digest"], "present": True})
        auth = body.get("auth")
        refused = pull_refusal(auth if isinstance(auth, str) else None) if pull_refusal else None
        if refused:
            return _error(403, "forbidden", f"pull {ref}: {refused}")
        return web.json_response(await host(request).pull(ref))

    async def inspect(request):
        c = host(request).inspect()
        if c is None:
            return _error(404, "not_found", f"No such container: {host(request).container_name}")
        return web.json_response(c)

    def strings(value) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())

    async def run(request):
        body = await json_body(request)
        ref, env, secrets = body.get("image_ref"), body.get("env") or {}, body.get("secrets") or {}
        label = body.get("secrets_label")
        if not isinstance(ref, str) or not ref:
            return _error(400, "bad_request", "image_ref (string) is required")
        if not strings(env):
            return _error(400, "bad_request", "env must be an object of strings")
        if not strings(secrets) or not (label is None or isinstance(label, str)):
            return _error(400, "bad_request", "secrets must be an object of strings, secrets_label a string")
        return web.json_response(await host(request).run(ref, env, secrets=secrets, secrets_label=label), status=201)

    async def release(request):
        body = await json_body(request)
        ref, argv = body.get("image_ref"), body.get("argv")
        env, secrets, bound = body.get("env") or {}, body.get("secrets") or {}, body.get("bound_seconds", 600)
        if not isinstance(ref, str) or not ref:
            return _error(400, "bad_request", "image_ref (string) is required")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
            return _error(400, "bad_request", "argv must be a non-empty list of non-empty strings")
        if not strings(env) or not strings(secrets):
            return _error(400, "bad_request", "env and secrets must be objects of strings")
        if not isinstance(bound, (int, float)) or bound <= 0:
            return _error(400, "bad_request", "bound_seconds must be a positive number")
        h = host(request)
        h.pulled()  # an unknown host answers 404 before the stream starts
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)

        async def line(text: str) -> None:
            await resp.write((json.dumps({"line": text}) + "\n").encode())

        try:
            code, _ = await h.release(ref, argv, env, secrets=secrets, bound=float(bound), on_line=line)
        except HostError as exc:
            await resp.write((json.dumps({"error": str(exc), "status": exc.status}) + "\n").encode())
        else:
            await resp.write((json.dumps({"exit_code": code}) + "\n").encode())
        await resp.write_eof()
        return resp

    async def stop(request):
        body = await json_body(request)
        grace = body.get("grace_seconds", 10)
        if not isinstance(grace, (int, float)) or grace < 0:
            return _error(400, "bad_request", "grace_seconds must be a non-negative number")
        await host(request).stop(float(grace))
        return web.Response(status=204)

    async def logs(request):
        try:
            tail = int(request.query.get("tail", "100"))
        except ValueError:
            return _error(400, "bad_request", "tail must be an integer")
        since = None
        if "since" in request.query:
            try:
                since = float(request.query["since"])
            except ValueError:
                since = math.nan
            if not math.isfinite(since) or since < 0:
                return _error(400, "bad_request", "since must be epoch seconds (a non-negative number)")
        return web.json_response({"lines": host(request).logs(tail, since)})

    async def state_list(request):
        return web.json_response({"files": host(request).state_list()})

    async def state_get(request):
        text = host(request).state_read(request.match_info["file"])
        if text is None:
            return _error(404, "not_found", f"no state file {request.match_info['file']!r}")
        return web.Response(text=text)

    async def state_put(request):
        host(request).state_write(request.match_info["file"], await request.text())
        return web.Response(status=204)

    async def state_post(request):
        h, name, mode = host(request), request.match_info["file"], request.query.get("mode")
        text = await request.text()
        if mode == "create":
            if h.state_create(name, text):
                return web.Response(status=201)
            return _error(409, "conflict", f"state file {name!r} already exists")
        if mode == "append":
            h.state_append(name, text)
            return web.Response(status=204)
        return _error(400, "bad_request", "mode must be create or append")

    async def state_delete(request):
        host(request).state_remove(request.match_info["file"])
        return web.Response(status=204)

    def _slot(request) -> str:
        slot = request.match_info["slot"]
        if slot not in ("a", "b"):
            raise SwapBadRequest(f"unknown slot {slot!r}: a or b")
        return slot

    def _env(body: dict) -> dict[str, str] | None:
        env = body.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            return None
        return env

    async def proxy_get(request):
        return web.json_response(host(request).swap.proxy_info())

    async def proxy_install(request):
        body = await json_body(request)
        slot = body.get("slot")
        if slot not in (None, "a", "b"):
            return _error(400, "bad_request", "slot must be a, b or null")
        settings = {}
        for k in ("service_port", "proxy_port"):
            if k in body:
                if not isinstance(body[k], int) or not 0 < body[k] < 65536:
                    return _error(400, "bad_request", f"{k} must be a port number")
                settings[k] = body[k]
        if "slot_ports" in body:
            sp = body["slot_ports"]
            if not (isinstance(sp, dict) and set(sp) == {"a", "b"}
                    and all(isinstance(v, int) and 0 < v < 65536 for v in sp.values())):
                return _error(400, "bad_request", "slot_ports must be {a: port, b: port}")
            settings["slot_ports"] = sp
        if "port_env" in body:
            settings["port_env"] = str(body["port_env"])
        return web.json_response(await host(request).swap.install_proxy(slot, settings), status=201)

    async def proxy_switch(request):
        body = await json_body(request)
        slot = body.get("slot")
        if slot not in ("a", "b"):
            return _error(400, "bad_request", "slot must be a or b")
        await host(request).swap.switch(slot)
        return web.Response(status=204)

    async def slots_list(request):
        return web.json_response({"containers": host(request).swap.containers()})

    async def slot_run(request):
        slot = _slot(request)
        body = await json_body(request)
        ref, env, port = body.get("image_ref"), _env(body), body.get("port")
        if not isinstance(ref, str) or not ref:
            return _error(400, "bad_request", "image_ref (string) is required")
        if env is None:
            return _error(400, "bad_request", "env must be an object of strings")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            return _error(400, "bad_request", "port must be a port number")
        port_env = body.get("port_env")
        if port_env is not None and (not isinstance(port_env, str) or not port_env.isidentifier()):
            return _error(400, "bad_request", "port_env must be a variable name")
        secrets, label = body.get("secrets") or {}, body.get("secrets_label")
        if not strings(secrets) or not (label is None or isinstance(label, str)):
            return _error(400, "bad_request", "secrets must be an object of strings, secrets_label a string")
        c = await host(request).swap.run_slot(slot, ref, env, port, port_env, secrets=secrets, secrets_label=label)
        return web.json_response(c, status=201)

    async def slot_stop(request):
        slot = _slot(request)
        body = await json_body(request)
        grace = body.get("grace_seconds", 10)
        if not isinstance(grace, (int, float)) or grace < 0:
            return _error(400, "bad_request", "grace_seconds must be a non-negative number")
        await host(request).swap.stop_slot(slot, float(grace))
        return web.Response(status=204)

    async def slot_in_flight(request):
        return web.json_response({"in_flight": host(request).swap.in_flight(_slot(request))})

    async def in_flight_all(request):
        return web.json_response({"in_flight": host(request).swap.in_flight_all()})

    async def container_remove(request):
        await host(request).swap.remove_container(request.match_info["container"])
        return web.Response(status=204)

    async def prune(request):
        body = await json_body(request)
        keep = body.get("keep")
        if not isinstance(keep, int) or keep < 0:
            return _error(400, "bad_request", "keep must be a non-negative integer")
        return web.json_response({"removed": await host(request).swap.prune(keep)})

    async def reboot(request):
        await host(request).reboot()
        return web.Response(status=204)

    p = PREFIX
    return [
        web.get(p, handler(list_hosts)),
        web.get(p + "/{name}", handler(get_host)),
        web.post(p + "/{name}/pull", handler(pull)),
        web.get(p + "/{name}/container", handler(inspect)),
        web.post(p + "/{name}/container", handler(run)),
        web.post(p + "/{name}/container/stop", handler(stop)),
        web.post(p + "/{name}/release", handler(release)),
        web.get(p + "/{name}/logs", handler(logs)),
        web.get(p + "/{name}/state", handler(state_list)),
        web.get(p + "/{name}/state/{file}", handler(state_get)),
        web.put(p + "/{name}/state/{file}", handler(state_put)),
        web.post(p + "/{name}/state/{file}", handler(state_post)),
        web.delete(p + "/{name}/state/{file}", handler(state_delete)),
        web.get(p + "/{name}/proxy", handler(proxy_get)),
        web.post(p + "/{name}/proxy", handler(proxy_install)),
        web.post(p + "/{name}/proxy/switch", handler(proxy_switch)),
        web.get(p + "/{name}/slots", handler(slots_list)),
        web.post(p + "/{name}/slots/{slot}", handler(slot_run)),
        web.post(p + "/{name}/slots/{slot}/stop", handler(slot_stop)),
        web.get(p + "/{name}/slots/{slot}/in_flight", handler(slot_in_flight)),
        web.get(p + "/{name}/in_flight", handler(in_flight_all)),
        web.delete(p + "/{name}/containers/{container}", handler(container_remove)),
        web.post(p + "/{name}/prune", handler(prune)),
        web.post(p + "/{name}/reboot", handler(reboot)),
    ]
