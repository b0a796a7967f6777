#!/usr/bin/env python3
"""A stand-in `docker` CLI for the SSH runtime tests (the real engine is exercised in the lab).

It keeps its containers and images in the JSON file $FAKE_DOCKER_STATE, prints what the real
CLI prints for the commands DockerSSHRuntime sends (same argv, same output shapes, same error
texts), and records each pull's DOCKER_CONFIG (contents, modes, file system) and each run's
env file the same way. A ref tagged `block` makes pull or run wait until killed; `badrun` makes
run fail. A container labelled zdd.proxy (the local-swap proxy) runs the real `traefik` binary
($FAKE_TRAEFIK) on the host's 127.0.0.1, with its bind mount's paths as they are on the host; its
PID is kept in the state (`rm --force` and the tests end it by that PID).
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

STATE = os.environ["FAKE_DOCKER_STATE"]


def load():
    try:
        with open(STATE) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"images": {}, "containers": {}, "pulls": [], "calls": []}


def save(s):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(s, f)
    os.replace(tmp, STATE)


def fail(msg, code=1):
    print(msg, file=sys.stderr)
    save(s)
    sys.exit(code)


def fs_type(path):
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True).stdout.strip()


def read_env_file(path):
    """What docker does with --env-file: NAME=value lines, blank and # lines skipped."""
    out = []
    with open(path) as f:
        for line in f.read().split("\n"):
            line = line.lstrip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def after_dashdash(args):
    return args[args.index("--") + 1:] if "--" in args else args[-1:]


s = load()
argv = sys.argv[1:]
s["calls"].append(argv)
cmd = argv[0]

if cmd == "version":
    print("20.10.24+dfsg1")
elif cmd == "pull":
    ref = after_dashdash(argv)[0]
    rec = {"ref": ref, "docker_config": os.environ.get("DOCKER_CONFIG")}
    if rec["docker_config"]:
        d = rec["docker_config"]
        rec["dir_mode"] = oct(os.stat(d).st_mode & 0o777)
        rec["file_mode"] = oct(os.stat(os.path.join(d, "config.json")).st_mode & 0o777)
        rec["fs"] = fs_type(d)
        with open(os.path.join(d, "config.json")) as f:
            rec["config"] = json.load(f)
    s["pulls"].append(rec)
    if ref.endswith(":block"):
        save(s)
        time.sleep(120)
    if ref.endswith(":missing"):
        fail(f"Error response from daemon: manifest for {ref} not found: manifest unknown: manifest unknown")
    print(f"{ref.rsplit(':', 1)[1]}: Pulling from {ref.split(':')[0]}", flush=True)
    print("a1b2c3: Pull complete", flush=True)
    digest = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
    print(f"Digest: {digest}")
    s["images"][ref] = {"id": "sha256:" + format(len(s["images"]) + 1, "064x"), "digest": digest}
elif cmd == "image" and argv[1] == "inspect":
    target = after_dashdash(argv)[0]
    for ref, img in s["images"].items():
        if target in (ref, img["id"]):
            print(json.dumps([ref.rsplit(":", 1)[0] + "@" + img["digest"]]))
            break
    else:
        fail(f"Error: No such image: {target}")
elif cmd == "container" and argv[1] == "inspect":
    found, missing = [], []
    for key in after_dashdash(argv) if "--" in argv else argv[-1:]:
        c = s["containers"].get(key) or next((c for c in s["containers"].values() if c["Id"] == key), None)
        (found.append(c) if c is not None else missing.append(key))
    print(json.dumps(found))
    if missing:
        fail(f"Error: No such container: {missing[0]}")
elif cmd == "ps":
    want = [argv[i + 1][len("label="):] for i, a in enumerate(argv) if a == "--filter"]
    for c in s["containers"].values():
        labels = c["Config"]["Labels"]
        if all((k in labels and (not v or labels[k] == v[0])) for k, *v in (w.split("=", 1) for w in want)):
            print(c["Id"])
elif cmd == "start" and "--attach" not in argv:  # a kept slot container (`--attach`: a release)
    name = after_dashdash(argv)[0]
    if name not in s["containers"]:
        fail(f"Error response from daemon: No such container: {name}")
    s["containers"][name]["State"].update({"Status": "running", "Running": True, "ExitCode": 0,
                                           "StartedAt": "2026-11-26T12:30:00Z"})
    print(name)
elif cmd == "image" and argv[1] == "rm":
    ref = after_dashdash(argv)[0]
    users = [c["Name"] for c in s["containers"].values() if c["Config"]["Image"] == ref]
    if ref not in s["images"]:
        fail(f"Error response from daemon: No such image: {ref}")
    if users:
        fail(f'Error response from daemon: conflict: unable to remove repository reference "{ref}" (must force)'
             f" - container {users[0]} is using its referenced image")
    del s["images"][ref]
    print(f"Untagged: {ref}")
elif cmd == "run":
    rest = argv[1:argv.index("--")]
    ref = after_dashdash(argv)[0]
    name = rest[rest.index("--name") + 1]
    env = []
    if "--env-file" in rest:
        path = rest[rest.index("--env-file") + 1]
        env = read_env_file(path)
        s.setdefault("env_files", []).append(
            {"path": path, "mode": oct(os.stat(path).st_mode & 0o777), "fs": fs_type(path)})
    if ref.endswith(":block"):
        save(s)
        time.sleep(120)
    if ref.endswith(":badrun"):
        fail("docker: Error response from daemon: failed to create task for container: exec format error.", 126)
    if name in s["containers"]:
        fail(f'docker: Error response from daemon: Conflict. The container name "/{name}" is already in use.', 125)
    env += [rest[i + 1] for i, a in enumerate(rest) if a == "--env"]
    labels = dict(rest[i + 1].split("=", 1) for i, a in enumerate(rest) if a == "--label")
    pid = None
    if "zdd.proxy" in labels:
        mount = dict(kv.split("=", 1) for kv in rest[rest.index("--mount") + 1].split(",") if "=" in kv)
        args = after_dashdash(argv)[1:]
        static = open(args[0].split("=", 1)[1].replace(mount["target"], mount["source"], 1)).read()
        static = static.replace(mount["target"], mount["source"]).replace("0.0.0.0:", "127.0.0.1:")
        conf = os.path.join(os.path.dirname(STATE), "fake-traefik.yml")
        with open(conf, "w") as f:
            f.write(static)
        pid = subprocess.Popen([os.environ["FAKE_TRAEFIK"], f"--configFile={conf}"], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid
        s.setdefault("proxy_pids", []).append(pid)
    s["containers"][name] = {
        "Id": hashlib.sha256(name.encode()).hexdigest(),
        "Pid": pid,
        "Name": "/" + name,
        "Image": s["images"].get(ref, {"id": "sha256:" + "0" * 64})["id"],
        "Config": {"Image": ref, "Env": env, "Labels": labels},
        "HostConfig": {"NetworkMode": rest[rest.index("--network") + 1],
                       "RestartPolicy": {"Name": rest[rest.index("--restart") + 1]}},
        "State": {"Status": "running", "Running": True, "ExitCode": 0, "StartedAt": "2026-11-26T12:00:00.123456789Z"},
        "RestartCount": 0,
    }
    print("c" * 64)
elif cmd == "create":
    # Only what a release command uses: --rm, --network, --label, --env-file; then image, command.
    rest = argv[1:argv.index("--")]
    ref, command = after_dashdash(argv)[0], argv[argv.index("--") + 2:]
    path = rest[rest.index("--env-file") + 1]
    cid = format(len(s.get("created", [])) + 1, "064x")
    s.setdefault("created", []).append({
        "id": cid, "ref": ref, "command": command, "env": read_env_file(path), "env_file": path,
        "mode": oct(os.stat(path).st_mode & 0o777), "fs": fs_type(path), "rm": "--rm" in rest,
        "network": rest[rest.index("--network") + 1],
        "labels": dict(rest[i + 1].split("=", 1) for i, a in enumerate(rest) if a == "--label")})
    print(cid)
elif cmd == "start":
    # `start --attach ID`: prints its command's words, exits with N when the last is `exit=N`.
    c = next(c for c in s.get("created", []) if c["id"] == argv[-1])
    c["env_file_at_start"] = os.path.exists(c["env_file"])
    print("running " + " ".join(c["command"]), flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    last = c["command"][-1] if c["command"] else ""
    save(s)
    sys.exit(int(last.split("=", 1)[1]) if last.startswith("exit=") else 0)
elif cmd == "stop":
    name = after_dashdash(argv)[0]
    if name not in s["containers"]:
        fail(f"Error response from daemon: No such container: {name}")
    n = len(s["calls"])  # grows with every command: later stops finish later
    s["containers"][name]["State"].update({"Status": "exited", "Running": False, "ExitCode": 0,
                                           "FinishedAt": f"2026-11-26T13:{n // 60 % 60:02d}:{n % 60:02d}Z"})
    s["stop_timeout"] = argv[argv.index("-t") + 1]
    print(name)
elif cmd == "rm" and argv[-1] in {c["id"] for c in s.get("created", [])}:
    s.setdefault("removed", []).append(argv[-1])
elif cmd == "rm":
    name = after_dashdash(argv)[0]
    c = s["containers"].get(name)
    if c is None:
        fail(f"Error response from daemon: No such container: {name}")
    if c["State"]["Running"] and "--force" not in argv:
        fail(f"Error response from daemon: You cannot remove a running container {c['Id']}.")
    if c.get("Pid"):
        try:
            os.kill(c["Pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    del s["containers"][name]
    print(name)
elif cmd == "logs":
    name = after_dashdash(argv)[0]
    if name not in s["containers"]:
        fail(f"Error: No such container: {name}")
    n = int(argv[argv.index("--tail") + 1])
    # Line i was written at LOG_T0 + i; --since as Docker reads a number: seconds.nanoseconds.
    lines = [(1_700_000_000 + i, f"line {i}") for i in range(1, 8)]
    if "--since" in argv:
        s["logs_since"] = since = argv[argv.index("--since") + 1]
        sec, nanos = since.split(".")
        lines = [(t, x) for t, x in lines if t * 10**9 >= int(sec) * 10**9 + int(nanos)]
    print("\n".join(x for _, x in lines[-n:]), flush=True)
    print("an error line", file=sys.stderr)
else:
    fail(f"fake docker: unsupported {argv}", 2)
save(s)
