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


def repo_of(ref: str) -> str:
    """The reference without tag or digest."""
    ref = ref.split("@", 1)[0]
    head, _, last = ref.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


# --- docker -------------------------------------------------------------------------------

# Registry credentials arrive on stdin as a docker config.json and live in a private temporary
# DOCKER_CONFIG only for the pull; they never appear on a command line. The pull runs in the
# background and the shell `wait`s, so a hangup/termination runs the trap at once (a shell
# defers traps while a foreground child runs): it ends the pull and the EXIT trap removes the dir.
_PULL_WITH_AUTH = """set -u
umask 077
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
cat > "$d/config.json" || exit 1
DOCKER_CONFIG="$d" docker pull -- "$1" &
p=$!
trap 'kill "$p" 2>/dev/null; exit 129' HUP
trap 'kill "$p" 2>/dev/null; exit 130' INT
trap 'kill "$p" 2>/dev/null; exit 143' TERM PIPE
wait "$p"
"""


def docker_pull(ref: str, *, with_credentials_on_stdin: bool) -> Argv:
    check_image_ref(ref)
    if with_credentials_on_stdin:
        return ["sh", "-c", _PULL_WITH_AUTH, "zdd-pull", ref]
    return ["docker", "pull", "--", ref]


def docker_image_digests(ref: str) -> Argv:
    """`RepoDigests` of a local image as JSON (the registry digest, `repo@sha256:...`)."""
    return ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", "--", check_image_ref(ref)]


def docker_image_digests_by_id(image_id: str) -> Argv:
    if not re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", image_id):
        raise ValueError(f"invalid image id {image_id!r}")
    return ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", "--", image_id]


def docker_run(
    name: str,
    ref: str,
    *,
    port: int,
    admin_port: int,
    version: str,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Argv:
    """The app container: host networking, restart always, admin port on the host's loopback.

    The operator's env comes first; the ports, ZDD_ADMIN_HOST and ZDD_VERSION come last so
    they cannot be overridden (the admin endpoints must never listen on a public address).
    """
    check_container_name(name)
    check_image_ref(ref)
    argv = ["docker", "run", "--detach", "--name", name, "--network", "host", "--restart", "always"]
    for k, v in (env or {}).items():
        if not _ENV_KEY.fullmatch(k):
            raise ValueError(f"invalid environment variable name {k!r}")
        if k in ("ZDD_PORT", "ZDD_ADMIN_PORT", "ZDD_ADMIN_HOST", "ZDD_VERSION"):
            continue
        argv += ["--env", f"{k}={v}"]
    argv += [
        "--env", f"ZDD_PORT={int(port)}",
        "--env", f"ZDD_ADMIN_PORT={int(admin_port)}",
        "--env", "ZDD_ADMIN_HOST=127.0.0.1",
        "--env", f"ZDD_VERSION={version}",
    ]
    for k, v in sorted((labels or {}).items()):
        argv += ["--label", f"{k}={v}"]
    argv += ["--", ref]
    return argv


def docker_stop(name: str, grace_seconds: float) -> Argv:
    """SIGTERM, then SIGKILL after the grace period (docker takes whole seconds)."""
    return ["docker", "stop", "-t", str(max(0, math.ceil(grace_seconds))), "--", check_container_name(name)]


def docker_rm(name: str, *, force: bool = False) -> Argv:
    return ["docker", "rm", *(["--force"] if force else []), "--", check_container_name(name)]


def docker_inspect(name: str) -> Argv:
    """The container as a JSON array (works on every docker CLI, unlike `--format json`)."""
    return ["docker", "container", "inspect", "--", check_container_name(name)]


def docker_logs(name: str, tail: int) -> Argv:
    """stdout and stderr of the container, merged in arrival order."""
    return ["sh", "-c", 'exec docker logs --tail "$1" -- "$2" 2>&1', "zdd-logs",
            str(int(tail)), check_container_name(name)]


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

# Exit 0 when nothing listens on TCP port $1 (any address), 1 when something does.
# `ss` is in iproute2 (on every Debian droplet); /proc/net/tcp is the fallback.
_PORT_FREE = """p="$1"
if command -v ss >/dev/null 2>&1; then
  out=$(ss -Htln "sport = :$p") || exit 2
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

