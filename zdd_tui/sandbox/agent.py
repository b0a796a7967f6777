"""The host agent: HTTP endpoints for each local host, under the sandbox API server.

Not DigitalOcean paths: `/sandbox/hosts/...`, with the API's bearer token. `SandboxRuntime`
(zdd_tui/sandbox/runtime.py) is the client. JSON in and out; errors are DO-shaped
`{"id", "message"}` with 404 (no host, unknown image, no container), 409 (container already
running), 400 (bad input), 500 (the operation failed).

  GET    /sandbox/hosts                                   all hosts (name, address, ports, tag)
  GET    /sandbox/hosts/{name}                            one host
  POST   /sandbox/hosts/{name}/pull        {image_ref, auth} -> {ref, tag, digest}; 403 when the
                                                         registry refuses the credentials
  GET    /sandbox/hosts/{name}/container                  -> container (404 when none)
  POST   /sandbox/hosts/{name}/container   {image_ref, env, secrets, secrets_label}  run -> container
                                                         (secrets: kept in the sandbox's memory only)
  POST   /sandbox/hosts/{name}/release     {image_ref, argv, env, secrets, bound_seconds} -> JSON
                                                         lines {"line"}..., then {"exit_code"}
  POST   /sandbox/hosts/{name}/container/stop {grace_seconds}
  GET    /sandbox/hosts/{name}/logs?tail=N                -> {lines: [...]}
  GET    /sandbox/hosts/{name}/state                      -> {files: [...]}
  GET    /sandbox/hosts/{name}/state/{file}               -> text (404 when absent)
  PUT    /sandbox/hosts/{name}/state/{file}               atomic replace
  POST   /sandbox/hosts/{name}/state/{file}?mode=create   201, or 409 when it exists
  POST   /sandbox/hosts/{name}/state/{file}?mode=append   one line
  DELETE /sandbox/hosts/{name}/state/{file}               204 (also when absent)
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from aiohttp import web

from zdd_tui.sandbox.api import json_body
from zdd_tui.sandbox.hosts import HostError, HostManager

PREFIX = "/sandbox/hosts"


def _error(status: int, ident: str, message: str) -> web.Response:
    return web.json_response({"id": ident, "message": message}, status=status)


def _host_error(exc: HostError) -> web.Response:
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
            except HostError as exc:
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
        return web.json_response({"lines": host(request).logs(tail)})

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
    ]
