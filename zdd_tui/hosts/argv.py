"""The argv lists sent to hosts, built as data by pure functions.

Nothing here runs anything. Every value that comes from outside (image refs, names, file
contents) is a separate argv element; shell snippets are constant text that reads its inputs
from positional parameters ("$1"...), so no value is ever spliced into shell code. The argv is
turned into one command line by `to_command_line` (shlex.join), the only quoting in zdd-tui.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence

Argv = list[str]

# Exit status the state snippets use for "absent" / "already exists", distinct from errors (1, 2).
EXIT_ABSENT = 3
EXIT_EXISTS = 4

_STATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# A docker reference: [host[:port]/]path[:tag][@digest]; no whitespace, no leading '-'.
_IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,511}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def to_command_line(argv: Sequence[str]) -> str:
    """The one place where argv becomes a shell command line (the SSH server runs it with sh)."""
    if not argv:
        raise ValueError("empty command")
    return shlex.join(argv)


def check_state_name(name: str) -> str:
    if not _STATE_NAME.fullmatch(name):
        raise ValueError(f"invalid state file name {name!r} (letters, digits, '.', '_', '-'; not starting with '.')")
    return name


def check_container_name(name: str) -> str:
    if not _CONTAINER_NAME.fullmatch(name):
        raise ValueError(f"invalid container name {name!r}")
    return name


def check_image_ref(ref: str) -> str:
    if not _IMAGE_REF.fullmatch(ref):
        raise ValueError(f"invalid image reference {ref!r}")
    return ref


def tag_of(ref: str) -> str:
    """The tag part of a reference (`latest` when none)."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def registry_of(ref: str) -> str:
    """The registry host a reference pulls from (`docker.io` when it names none)."""
    head, sep, _ = ref.partition("/")
    if sep and ("." in head or ":" in head or head == "localhost"):
        return head
    return "docker.io"


def repo_of(ref: str) -> str:
    """The reference without tag or digest."""
    ref = ref.split("@", 1)[0]
    head, _, last = ref.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


# --- secrets on a host -------------------------------------------------------------------

# Secret material a command needs on a host (registry credentials, the container's environment)
# arrives on stdin and lives in one directory only the SSH user can use, on a memory-backed file
# system (/run, else /dev/shm; never /tmp, which is disk on Debian): a kill or a reboot cannot
# leave it on disk. Each entry is named `<kind>.<deadline>.<id>`: the command's shell removes it
# on exit (a trap), the runtime removes it by id after a failure, and `secrets_sweep` removes any
# whose deadline (epoch seconds, past the command's `timeout` bound) has passed.
_SECRET_DIR = """set -u
umask 077
base=
for fs in /run /dev/shm; do
  case $(stat -f -c %T "$fs" 2>/dev/null) in tmpfs|ramfs) ;; *) continue ;; esac
  b="$fs/zdd-tui-$(id -u)"
  mkdir -m 700 "$b" 2>/dev/null
  if [ -d "$b" ] && [ ! -L "$b" ] && [ -O "$b" ] && chmod 700 "$b"; then base=$b; break; fi
done
if [ -z "$base" ]; then
  echo "zdd-tui: no memory-backed directory for secrets on this host (a tmpfs at /run or /dev/shm)" >&2
  exit 1
fi
"""

# How long `timeout` waits after its TERM before it KILLs, and the slack added to a deadline.
_KILL_AFTER = 5
_DEADLINE_SLACK = _KILL_AFTER + 3

# Set once $e names the entry, before it exists: it is removed on every exit, and a hangup or
# termination ends the command (below) and exits, which runs the EXIT trap. Untrapped, such a
# signal would end the shell without it.
_TRAPS = """p=
trap 'rm -rf -- "$e"' EXIT
trap 'kill "$p" 2>/dev/null; exit 129' HUP
trap 'kill "$p" 2>/dev/null; exit 130' INT
trap 'kill "$p" 2>/dev/null; exit 143' TERM PIPE
"""

# Runs "$@" under `timeout` in the background and waits: a shell defers traps while a foreground
# child runs, but `wait` returns at once for a trapped signal.
_GUARDED = f"""timeout -k {_KILL_AFTER} "$bound" "$@" &
p=$!
wait "$p"
s=$?
if [ "$s" -eq 124 ] || [ "$s" -eq 137 ]; then
  echo "zdd-tui: $1 $2 did not finish within ${{bound}}s on the host; stopped" >&2
fi
exit "$s"
"""

# $1 image ref, $2 bound (seconds), $3 id; the docker config.json comes on stdin.
_PULL_WITH_AUTH = _SECRET_DIR + f"""ref=$1 bound=$2
e="$base/pull.$(( $(date +%s) + bound + {_DEADLINE_SLACK} )).$3"
""" + _TRAPS + """mkdir -m 700 "$e" || exit 1
cat > "$e/config.json" || exit 1
export DOCKER_CONFIG="$e"
set -- docker pull -- "$ref"
""" + _GUARDED

# $1 id, $2 bound (seconds), then `docker run`'s options and image; the env file comes on stdin.
# `docker run --detach` returns once the container has started: the file goes right after.
_RUN_WITH_ENV_FILE = _SECRET_DIR + f"""id=$1 bound=$2
shift 2
e="$base/env.$(( $(date +%s) + bound + {_DEADLINE_SLACK} )).$id"
""" + _TRAPS + """(set -C; cat > "$e") || exit 1
set -- docker run --env-file "$e" "$@"
""" + _GUARDED

# $1 id, $2 bound (seconds), then `docker create`'s options, image and command; the env file
# comes on stdin. The env file is read by `docker create` and removed before the command starts;
# the one-off container goes when it ends (--rm), or by the trap when the bound cuts it off.
_RELEASE_WITH_ENV_FILE = _SECRET_DIR + f"""id=$1 bound=$2
shift 2
e="$base/env.$(( $(date +%s) + bound + {_DEADLINE_SLACK} )).$id"
""" + _TRAPS + """(set -C; cat > "$e") || exit 1
c=$(docker create --env-file "$e" "$@") || exit 1
rm -f -- "$e"
trap 'rm -rf -- "$e"; docker rm --force "$c" >/dev/null 2>&1' EXIT
set -- docker start --attach "$c"
""" + _GUARDED

# Entries whose deadline has passed: their command is over (its `timeout` saw to that) and its
# shell did not remove them (killed outright, or the host lost power mid-way on a /dev/shm that
# survived). Prints what it removed.
_SWEEP = """now=$(date +%s)
for fs in /run /dev/shm; do
  b="$fs/zdd-tui-$(id -u)"
  [ -d "$b" ] && [ ! -L "$b" ] && [ -O "$b" ] || continue
  for e in "$b"/pull.* "$b"/env.*; do
    [ -e "$e" ] || continue
    t=${e##*/}; t=${t#*.}; t=${t%%.*}
    case $t in ''|*[!0-9]*) continue ;; esac
    if [ "$t" -lt "$now" ]; then rm -rf -- "$e" && echo "${e##*/}"; fi
  done
done
exit 0
"""

# $1 id: every entry of that id, whatever its kind or deadline.
_REMOVE = """for fs in /run /dev/shm; do
  b="$fs/zdd-tui-$(id -u)"
  [ -d "$b" ] && [ ! -L "$b" ] && [ -O "$b" ] || continue
  rm -rf -- "$b"/*."$1"
done
exit 0
"""

_SECRET_ID = re.compile(r"[0-9a-f]{8,64}")


def _check_id(secret_id: str) -> str:
    if not _SECRET_ID.fullmatch(secret_id):
        raise ValueError(f"invalid secret entry id {secret_id!r} (8 to 64 lowercase hex digits)")
    return secret_id


def _check_bound(seconds: float) -> str:
    if not seconds > 0:
        raise ValueError(f"a command's bound must be positive, not {seconds!r}")
    return str(math.ceil(seconds))


def secrets_sweep() -> Argv:
    """Remove secret entries past their deadline (run on each new connection)."""
    return ["sh", "-c", _SWEEP, "zdd-sweep"]


def secrets_remove(secret_id: str) -> Argv:
    """Remove the secret entries of one command (after it failed or its outcome is unknown)."""
    return ["sh", "-c", _REMOVE, "zdd-secrets-remove", _check_id(secret_id)]


# --- docker -------------------------------------------------------------------------------


def docker_pull(ref: str, *, bound_seconds: float, credentials_id: str | None = None) -> Argv:
    """`docker pull` ended after bound_seconds. With credentials_id, a docker config.json with the
    registry credentials comes on stdin and is kept as a secret entry only for the pull."""
    check_image_ref(ref)
    bound = _check_bound(bound_seconds)
    if credentials_id is not None:
        return ["sh", "-c", _PULL_WITH_AUTH, "zdd-pull", ref, bound, _check_id(credentials_id)]
    return ["timeout", "-k", str(_KILL_AFTER), bound, "docker", "pull", "--", ref]


def docker_image_digests(ref: str) -> Argv:
    """`RepoDigests` of a local image as JSON (the registry digest, `repo@sha256:...`)."""
    return ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", "--", check_image_ref(ref)]


def docker_image_digests_by_id(image_id: str) -> Argv:
    if not re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", image_id):
        raise ValueError(f"invalid image id {image_id!r}")
    return ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", "--", image_id]


# Set by docker_run itself, last, so the operator's environment cannot change them (the admin
# endpoints must never listen on a public address).
FIXED_ENV = ("ZDD_PORT", "ZDD_ADMIN_PORT", "ZDD_ADMIN_HOST")


def docker_run(
    name: str,
    ref: str,
    *,
    port: int,
    admin_port: int,
    env_file_id: str,
    bound_seconds: float,
    labels: Mapping[str, str] | None = None,
) -> Argv:
    """The app container: host networking, restart always, admin port on the host's loopback.

    The environment (`env_file`'s text) comes on stdin into a secret entry given to
    `--env-file`, so no value of it is on any command line; FIXED_ENV come as `--env`, which
    wins over the file.
    """
    check_container_name(name)
    check_image_ref(ref)
    argv = ["sh", "-c", _RUN_WITH_ENV_FILE, "zdd-run", _check_id(env_file_id), _check_bound(bound_seconds),
            "--detach", "--name", name, "--network", "host", "--restart", "always",
            "--env", f"ZDD_PORT={int(port)}",
            "--env", f"ZDD_ADMIN_PORT={int(admin_port)}",
            "--env", "ZDD_ADMIN_HOST=127.0.0.1"]
    for k, v in sorted((labels or {}).items()):
        argv += ["--label", f"{k}={v}"]
    argv += ["--", ref]
    return argv


def docker_release(
    ref: str,
    command: Sequence[str],
    *,
    env_file_id: str,
    bound_seconds: float,
    labels: Mapping[str, str] | None = None,
) -> Argv:
    """A one-off container of `ref` running `command` (the release command), attached: its
    output is the command's, its exit status the command's. Host networking (it reaches what
    the app reaches), no restart, removed when it ends. The environment comes on stdin as for
    `docker_run`; no value of it is on any command line."""
    check_image_ref(ref)
    if not command or not all(isinstance(a, str) and a and "\0" not in a for a in command):
        raise ValueError("a release command is a non-empty list of non-empty arguments")
    argv = ["sh", "-c", _RELEASE_WITH_ENV_FILE, "zdd-release", _check_id(env_file_id), _check_bound(bound_seconds),
            "--rm", "--network", "host"]
    for k, v in sorted((labels or {}).items()):
        argv += ["--label", f"{k}={v}"]
    argv += ["--", ref, *command]
    return argv


def env_file(env: Mapping[str, str], *, fixed: Sequence[str] = FIXED_ENV) -> str:
    """The text of a docker env file (`NAME=value` lines) for `env`, without the `fixed` names
    (those the run command sets itself, or must never reach the app).

    Docker reads each line up to its newline and takes the value verbatim, so a value cannot
    hold a newline, a carriage return or a NUL; the message names the variable, never the value.
    """
    lines = []
    for k, v in env.items():
        if not _ENV_KEY.fullmatch(k):
            raise ValueError(f"invalid environment variable name {k!r}")
        if k in fixed:
            continue
        if any(c in v for c in "\n\r\0"):
            raise ValueError(f"environment variable {k}: a value cannot contain a newline, carriage return or NUL")
        lines.append(f"{k}={v}\n")
    return "".join(lines)


def docker_stop(name: str, grace_seconds: float) -> Argv:
    """SIGTERM, then SIGKILL after the grace period (docker takes whole seconds)."""
    return ["docker", "stop", "-t", str(max(0, math.ceil(grace_seconds))), "--", check_container_name(name)]


def docker_rm(name: str, *, force: bool = False) -> Argv:
    return ["docker", "rm", *(["--force"] if force else []), "--", check_container_name(name)]


def docker_inspect(name: str) -> Argv:
    """The container as a JSON array (works on every docker CLI, unlike `--format json`)."""
    return ["docker", "container", "inspect", "--", check_container_name(name)]


def docker_logs(name: str, tail: int, since: float | None = None) -> Argv:
    """stdout and stderr of the container, merged in arrival order; the last `tail` lines, and
    with `since` (epoch seconds) only those written at or after it."""
    if since is None:
        return ["sh", "-c", 'exec docker logs --tail "$1" -- "$2" 2>&1', "zdd-logs",
                str(int(tail)), check_container_name(name)]
    return ["sh", "-c", 'exec docker logs --tail "$1" --since "$3" -- "$2" 2>&1', "zdd-logs",
            str(int(tail)), check_container_name(name), docker_since(since)]


def docker_since(since: float) -> str:
    """Epoch seconds as Docker's `--since` reads a number: `<seconds>.<nanoseconds>`, the
    fraction in exactly nine digits (Docker takes the digits after the point as nanoseconds,
    so `.5` would be 5 ns)."""
    if not math.isfinite(since) or since < 0:
        raise ValueError(f"since must be non-negative epoch seconds, not {since!r}")
    # To the microsecond: a float of epoch seconds holds no more (and whole seconds exactly).
    seconds, micros = divmod(round(since * 1_000_000), 1_000_000)
    return f"{seconds}.{micros * 1000:09d}"


# --- local-swap: slot containers, the proxy, sockets --------------------------------------

# Exit status of `proxy_file_write` when the file already holds exactly that content.
EXIT_UNCHANGED = 5
_CONTAINER_ID = re.compile(r"[0-9a-f]{12,64}")
# Paths that go into `--mount type=bind,source=...` (comma-separated): no comma, no '=' and
# no whitespace, absolute.
_MOUNT_PATH = re.compile(r"/[A-Za-z0-9._/+@-]*")


def docker_run_slot(
    name: str,
    ref: str,
    *,
    port_env: str,
    port: int,
    env_file_id: str,
    bound_seconds: float,
    labels: Mapping[str, str] | None = None,
) -> Argv:
    """An app container on a slot (local-swap): host networking, `restart unless-stopped` (a
    crash restarts it, a stop keeps it stopped across a reboot), its port in `$port_env`.

    The environment comes on stdin as in `docker_run`; `port_env` comes as `--env`, which wins.
    No ZDD_ADMIN_*: the app needs no admin port here.
    """
    check_container_name(name)
    check_image_ref(ref)
    if not _ENV_KEY.fullmatch(port_env):
        raise ValueError(f"invalid environment variable name {port_env!r}")
    argv = ["sh", "-c", _RUN_WITH_ENV_FILE, "zdd-run", _check_id(env_file_id), _check_bound(bound_seconds),
            "--detach", "--name", name, "--network", "host", "--restart", "unless-stopped",
            "--env", f"{port_env}={int(port)}"]
    for k, v in sorted((labels or {}).items()):
        argv += ["--label", f"{k}={v}"]
    argv += ["--", ref]
    return argv


def docker_start(name: str, *, bound_seconds: float) -> Argv:
    """Start an existing (stopped) container again, as it was created."""
    return ["timeout", "-k", str(_KILL_AFTER), _check_bound(bound_seconds), "docker", "start", "--",
            check_container_name(name)]


def docker_slot_ids(app: str) -> Argv:
    """Ids of the app's slot containers, running or not (labels zdd.app=<app> and zdd.slot: the
    single container of lb-drain and the proxy have no zdd.slot)."""
    return ["docker", "ps", "--all", "--no-trunc", "--filter", f"label=zdd.app={check_container_name(app)}",
            "--filter", "label=zdd.slot", "--format", "{{.ID}}"]


def docker_inspect_ids(ids: Sequence[str]) -> Argv:
    """Several containers as one JSON array."""
    if not ids:
        raise ValueError("no container to inspect")
    for i in ids:
        if not _CONTAINER_ID.fullmatch(i):
            raise ValueError(f"invalid container id {i!r}")
    return ["docker", "container", "inspect", "--", *ids]


def docker_image_rm(ref: str) -> Argv:
    """Untag/remove a local image; docker refuses while a container uses it."""
    return ["docker", "image", "rm", "--", check_image_ref(ref)]


def check_mount_path(path: str) -> str:
    if not _MOUNT_PATH.fullmatch(path) or "/../" in path + "/" or "/./" in path + "/":
        raise ValueError(f"invalid path for a bind mount {path!r} (absolute; letters, digits, '._/+@-')")
    return path


def docker_run_proxy(name: str, image: str, *, config_dir: str, mount: str, config_file: str,
                     app: str, bound_seconds: float) -> Argv:
    """The proxy container: host networking, `restart always`, its configuration directory
    bind-mounted read-only (a directory, so a dynamic file replaced by rename is seen)."""
    check_container_name(name)
    check_image_ref(image)
    source = check_mount_path(config_dir)
    target = check_mount_path(mount)
    if not config_file.startswith(target + "/"):
        raise ValueError(f"the proxy's configuration file {config_file!r} is not under {target!r}")
    return ["timeout", "-k", str(_KILL_AFTER), _check_bound(bound_seconds),
            "docker", "run", "--detach", "--name", name, "--network", "host", "--restart", "always",
            "--label", f"zdd.proxy={check_container_name(app)}",
            "--mount", f"type=bind,source={source},target={target},readonly",
            "--", image, f"--configFile={check_mount_path(config_file)}"]


# $1 directory (created 0700), $2 file name; the content comes on stdin. Replaced atomically (a
# temp file in the same directory renamed over the name, which a watcher sees as one change);
# EXIT_UNCHANGED, touching nothing, when the file already holds that content. The temp name ends
# in six random letters, never `.yml`: a directory watcher that reads *.yml skips it.
_FILE_WRITE = f"""umask 077
mkdir -p -- "$1" && chmod 700 -- "$1" && cd -- "$1" || exit 1
t=$(mktemp ".$2.XXXXXX") || exit 1
trap 'rm -f "$t"' EXIT
cat > "$t" || exit 1
if [ -f "$2" ] && cmp -s -- "$t" "$2"; then exit {EXIT_UNCHANGED}; fi
mv -f -- "$t" "$2"
"""


def proxy_file_write(directory: str, name: str) -> Argv:
    """Replace `directory/name` with stdin, atomically, in a 0700 directory (see _FILE_WRITE)."""
    return ["sh", "-c", _FILE_WRITE, "zdd-proxy-write", check_mount_path(directory), check_state_name(name)]


def sockets_established(port: int, dst: str = "127.0.0.1") -> Argv:
    """Established TCP connections to `dst:port`, one line each, no header (iproute2's ss)."""
    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", dst):
        raise ValueError(f"invalid IPv4 address {dst!r}")
    return ["ss", "-Htn", "state", "established", f"( dst {dst} and dport = :{int(port)} )"]


def sockets_established_to(ports: Sequence[int], dst: str = "127.0.0.1") -> Argv:
    """Established TCP connections to `dst` on any of `ports`, one line each (its peer
    `address:port` last), no header: one `ss` for every slot's count."""
    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", dst):
        raise ValueError(f"invalid IPv4 address {dst!r}")
    if not ports:
        raise ValueError("no port to count connections to")
    any_port = " or ".join(f"dport = :{int(p)}" for p in ports)
    return ["ss", "-Htn", "state", "established", f"( dst {dst} and ( {any_port} ) )"]


# --- state files (lock, journal) ----------------------------------------------------------

# Each snippet gets the state dir as $1 and the file name as $2; content comes on stdin.
_STATE_READ = f"""cd -- "$1" 2>/dev/null || exit {EXIT_ABSENT}
[ -e "$2" ] || exit {EXIT_ABSENT}
exec cat -- "$2"
"""

# Exclusive create: the content goes to a temp file first and is hard-linked into place; link(2)
# fails when the name exists, so exactly one of two racing creators wins (like `set -C`, i.e.
# O_EXCL) and, unlike a noclobber redirect, a reader never sees a half-written lock.
_STATE_CREATE = f"""umask 077
mkdir -p -- "$1" && cd -- "$1" || exit 1
t=$(mktemp ".$2.XXXXXX") || exit 1
trap 'rm -f "$t"' EXIT
cat > "$t" || exit 1
ln -- "$t" "$2" 2>/dev/null || exit {EXIT_EXISTS}
"""

# Atomic replace: write a temp file in the same directory, then rename over the name.
_STATE_WRITE = """umask 077
mkdir -p -- "$1" && cd -- "$1" || exit 1
t=$(mktemp ".$2.XXXXXX") || exit 1
trap 'rm -f "$t"' EXIT
cat > "$t" && mv -f -- "$t" "$2"
"""

_STATE_APPEND = """umask 077
mkdir -p -- "$1" && cd -- "$1" || exit 1
cat >> "$2"
"""

_STATE_REMOVE = """cd -- "$1" 2>/dev/null || exit 0
rm -f -- "$2"
"""

_STATE_INIT = """umask 077
mkdir -p -- "$1" && chmod 700 -- "$1"
"""


def _state(script: str, tag: str, state_dir: str, name: str) -> Argv:
    return ["sh", "-c", script, tag, state_dir, check_state_name(name)]


def state_read(state_dir: str, name: str) -> Argv:
    return _state(_STATE_READ, "zdd-state-read", state_dir, name)


def state_create(state_dir: str, name: str) -> Argv:
    return _state(_STATE_CREATE, "zdd-state-create", state_dir, name)


def state_write(state_dir: str, name: str) -> Argv:
    return _state(_STATE_WRITE, "zdd-state-write", state_dir, name)


def state_append(state_dir: str, name: str) -> Argv:
    return _state(_STATE_APPEND, "zdd-state-append", state_dir, name)


def state_remove(state_dir: str, name: str) -> Argv:
    return _state(_STATE_REMOVE, "zdd-state-remove", state_dir, name)


def state_init(state_dir: str) -> Argv:
    return ["sh", "-c", _STATE_INIT, "zdd-state-init", state_dir]


# --- bootstrap ----------------------------------------------------------------------------

# Exit 0 when nothing listens on TCP port $1 (any address), 1 when something does (printed,
# with the process holding it: `ss -p`).
# `ss` is in iproute2 (on every Debian droplet); /proc/net/tcp is the fallback.
_PORT_FREE = """p="$1"
if command -v ss >/dev/null 2>&1; then
  out=$(ss -Htlnp "sport = :$p") || exit 2
  [ -z "$out" ] && exit 0
  printf '%s\\n' "$out"; exit 1
fi
hex=$(printf '%04X' "$p")
if awk -v h=":$hex" 'NR>1 && $4=="0A" && substr($2, length($2)-4)==h {f=1} END {exit !f}' \\
    /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
  echo "port $p is in use"; exit 1
fi
exit 0
"""


def port_free(port: int) -> Argv:
    return ["sh", "-c", _PORT_FREE, "zdd-port-free", str(int(port))]


# Exit status when the host has no cloud-init (the shell's "command not found"): nothing to wait for.
EXIT_NOT_FOUND = 127
# Exit status of coreutils `timeout` when the wait ran out.
EXIT_TIMED_OUT = 124

# A new droplet is "active" while cloud-init still runs its user data (apt-get included): wait
# for it, bounded on the host itself so an abandoned wait does not linger there.
_CLOUD_INIT_WAIT = """command -v cloud-init >/dev/null 2>&1 || exit 127
exec timeout "$1" cloud-init status --wait
"""


def cloud_init_wait(seconds: int) -> Argv:
    """Block until cloud-init has finished (0 done, 1 error, 2 done with recoverable errors,
    as cloud-init 23.4+ reports them); EXIT_TIMED_OUT after `seconds`; EXIT_NOT_FOUND without it."""
    return ["sh", "-c", _CLOUD_INIT_WAIT, "zdd-cloud-init-wait", str(max(1, int(seconds)))]


def docker_present() -> Argv:
    return ["sh", "-c", "command -v docker >/dev/null 2>&1 && docker version --format '{{.Server.Version}}'",
            "zdd-docker-check"]


def install_docker_apt() -> Argv:
    """Debian's docker.io package (what cloud-init installs too), non-interactive."""
    return [
        "sh", "-c",
        ("export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q docker.io"
         " && systemctl enable --now docker"),
        "zdd-install-docker",
    ]

