"""The project file, zdd.yaml: its keys, their defaults, and loading.

Each key is declared once, as a field of a frozen dataclass: the field's default is the key's
default, and its `key(...)` record holds the one-line explanation and what the key allows (a
range, choices, a pattern). Validation, `zdd-tui init`'s comments and README's configuration
reference all read those records, so a key's facts cannot drift apart.

`load_config(path)` parses and validates the file and raises `ConfigError` naming the file,
line, key path, what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from zdd_tui.app_secrets import name_problem as _secret_name_problem
from zdd_tui.errors import UsageError
from zdd_tui.secret_values import APP_SECRETS_HINT
from zdd_tui.secret_values import secret_kind as _secret_kind

DEFAULT_CONFIG_PATH = Path("zdd.yaml")
DEFAULT_API_URL = "https://api.digitalocean.com"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file; `line`/`column` are 1-based (0 when not known)."""

    file: str
    line: int
    column: int
    key: str  # dotted key path, e.g. load_balancer.health_check.unhealthy_threshold
    expected: str
    found: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        text = f"{where}: {self.key}: expected {self.expected}; found {self.found}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class ConfigError(UsageError):
    """zdd.yaml is malformed or invalid. Message names file, line, key path, expected, found."""

    def __init__(self, message: str, hint: str | None = None, *, issues: typing.Sequence[ConfigIssue] = ()):
        super().__init__(message, hint)
        self.issues = list(issues)


# ---- what a key is -------------------------------------------------------------------------------

_KEY = "zdd_key"  # the dataclasses.field metadata entry that holds a field's Key


@dataclass(frozen=True)
class Range:
    """Inclusive integer bounds. `why` names who set them when it is not us (DigitalOcean): errors
    say it, and `zdd-tui init` shows such a range beside the value (a port's range goes without saying)."""

    lo: float
    hi: float | None = None
    why: str | None = None

    def text(self) -> str:
        return f" from {self.lo:g} to {self.hi:g}" if self.hi is not None else f" of at least {self.lo:g}"


DO_RANGE = "DigitalOcean's allowed range"  # the API rejects other values
PORT = Range(1, 65535)
AT_LEAST_1 = Range(1)


@dataclass(frozen=True)
class Key:
    """A key's one-line explanation and the values it allows, kept beside its default (see `key`)."""

    help: str
    bounds: Range | None = None  # integers
    choices: tuple[tuple[str, str], ...] = ()  # (value, what it means; "" when the value says it)
    pattern: str | None = None  # a string value must match it whole
    pattern_text: str = ""  # what the pattern allows, in words
    check: Callable[[str], str | None] | None = None  # returns what was expected, or None

    @property
    def choice_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.choices)

    def problem(self, value: object) -> str | None:
        """What was expected, if `value` (of the key's type) is not allowed; None if it is."""
        if isinstance(value, int | float) and not isinstance(value, bool) and self.bounds is not None:
            b = self.bounds
            if value < b.lo or (b.hi is not None and value > b.hi):
                kind = "a number" if isinstance(value, float) else "an integer"
                return kind + b.text() + (f" ({b.why})" if b.why else "")
        if isinstance(value, str):
            if self.choices and value not in self.choice_names:
                return "one of " + ", ".join(self.choice_names)
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                return self.pattern_text
            if self.check is not None:
                return self.check(value)
        return None


def key(
    help: str,
    *,
    bounds: Range | None = None,
    choices: dict[str, str] | None = None,
    pattern: tuple[str, str] | None = None,
    check: Callable[[str], str | None] | None = None,
) -> dict[str, Key]:
    """A key's field metadata: `port: int = field(default=8080, metadata=key("what it is", bounds=PORT))`.

    `pattern` is (regular expression, what it allows in words); `check` returns what was expected
    when it refuses a value."""
    regex, regex_text = pattern or (None, "")
    return {_KEY: Key(help, bounds, tuple((choices or {}).items()), regex, regex_text, check)}


def api_url_problem(url: str) -> str | None:
    """What was expected, if `url` cannot be the DigitalOcean API's URL; None if it can."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "a URL without spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an https:// URL such as https://api.digitalocean.com"
    if parts.scheme == "http":
        # The token travels in the Authorization header: plain http only where it cannot be sniffed
        # on the way (loopback: the sandbox) or to a private test network (the lab).
        host = parts.hostname
        try:
            ip = ipaddress.ip_address(host)
            ok = ip.is_loopback or ip.is_private
        except ValueError:
            ok = host == "localhost"
        if not ok:
            return "an https:// URL (plain http only to a loopback or private address, such as the sandbox's)"
    return None


def inside_project_problem(path: str) -> str | None:
    """What was expected, if `path` could name a place outside the project directory (what a build
    sends to the Docker daemon must stay inside it); None if it stays inside. Symlinks are checked
    where the path is used."""
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "~")) or ".." in parts:
        return "a path inside the project, relative to zdd.yaml's directory (no leading '/' or '~', no '..')"
    return None


_DOCKER_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"  # Docker's container-name rule
_SLUG = r"[a-z0-9][a-z0-9-]*"

# ---- the keys ------------------------------------------------------------------------------------
# One field per key: `field(default=..., metadata=key(explanation, what it allows))`.


@dataclass(frozen=True)
class DigitalOceanConfig:
    api_url: str = field(default=DEFAULT_API_URL, metadata=key(
        "the DigitalOcean API; a token is sent only to the URL it is bound to (`zdd-tui login --api-url`)",
        check=api_url_problem))
    region: str = field(default="nyc3", metadata=key(
        "region slug for new droplets and the load balancer",
        pattern=(_SLUG, "a DigitalOcean region slug such as nyc3")))


@dataclass(frozen=True)
class DropletsConfig:
    tag: str = field(default="zdd-app", metadata=key(
        "tag that marks this app's droplets (the load balancer targets it)",
        pattern=(r"[A-Za-z0-9_:-]{1,255}", "a DigitalOcean tag (letters, digits, ':', '-', '_')")))
    # Hostnames, unique: checked with the other rules across fields (_Loader.cross_checks).
    names: tuple[str, ...] = field(default=("app-1", "app-2"), metadata=key(
        "droplet names (hostnames), in rollout order"))
    size: str = field(default="s-1vcpu-1gb", metadata=key(
        "size slug for new droplets", pattern=(_SLUG, "a droplet size slug such as s-1vcpu-1gb")))
    image: str = field(default="debian-12-x64", metadata=key(
        "image slug for new droplets", pattern=(r"[a-z0-9][a-z0-9._-]*", "an image slug such as debian-12-x64")))


@dataclass(frozen=True)
class HealthCheckConfig:
    protocol: str = field(default="http", metadata=key("", choices={"http": "", "https": ""}))
    path: str = field(default="/health", metadata=key(
        "path the load balancer checks; 200-399 is healthy",
        pattern=(r"/\S*", "an absolute URL path starting with '/'")))
    port: int | None = field(default=None, metadata=key("null = service.port", bounds=PORT))
    check_interval_seconds: int = field(default=10, metadata=key(
        "seconds between checks", bounds=Range(3, 300, DO_RANGE)))
    response_timeout_seconds: int = field(default=5, metadata=key(
        "seconds to wait for an answer", bounds=Range(3, 300, DO_RANGE)))
    unhealthy_threshold: int = field(default=3, metadata=key(
        "failed checks before a droplet is taken out", bounds=Range(2, 10, DO_RANGE)))
    healthy_threshold: int = field(default=5, metadata=key(
        "passed checks before a droplet gets traffic again", bounds=Range(2, 10, DO_RANGE)))


@dataclass(frozen=True)
class LoadBalancerConfig:
    name: str = field(default="zdd-app-lb", metadata=key(
        "load balancer name",
        pattern=(r"[A-Za-z0-9][A-Za-z0-9.-]*", "a load balancer name (letters, digits, '.', '-')")))
    size_unit: int = field(default=1, metadata=key("load balancer size units", bounds=Range(1, 100, DO_RANGE)))
    entry_port: int = field(default=80, metadata=key("public port clients connect to (HTTP)", bounds=PORT))
    target_port: int | None = field(default=None, metadata=key(
        "null = service.port (host networking: it must be service.port)", bounds=PORT))
    health_check: HealthCheckConfig = field(default_factory=HealthCheckConfig, metadata=key(
        "how the load balancer decides a droplet is healthy (DigitalOcean's ranges)"))


@dataclass(frozen=True)
class RegistryConfig:
    name: str = field(default="zdd-registry", metadata=key(
        "DigitalOcean container registry name",
        pattern=(r"[a-z0-9][a-z0-9-]{0,62}", "a registry name (lowercase letters, digits, '-', up to 63)")))
    repository: str = field(default="app", metadata=key(
        "repository in the registry (tags: latest, sha-<gitsha>)",
        pattern=(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
                 "a repository name (lowercase letters, digits, '.', '_', '-', '/')")))
    server: str = field(default="registry.digitalocean.com", metadata=key(  # a lab points it at its own
        "registry host", pattern=(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?", "a registry host[:port]")))
    tier: str = field(default="starter", metadata=key("", choices={"starter": "", "basic": "", "professional": ""}))
    region: str | None = field(default=None, metadata=key(
        "null = DigitalOcean's default region for registries",
        pattern=(_SLUG, "a DigitalOcean region slug such as fra1")))


@dataclass(frozen=True)
class ServiceConfig:
    port: int = field(default=8080, metadata=key(
        "port the service listens on, on each droplet (host networking)", bounds=PORT))
    admin_port: int = field(default=9090, metadata=key(
        "admin endpoints (drain, stats), bound to the host's 127.0.0.1 only", bounds=PORT))
    container_name: str | None = field(default=None, metadata=key(
        "null = the app name", pattern=(_DOCKER_NAME, "a Docker container name")))
    env: dict[str, str] = field(default_factory=dict, metadata=key(
        "environment for the container; never secrets (NAME: value)"))
    port_env: str = field(default="PORT", metadata=key(
        "local-swap: the variable that tells the app which port to listen on",
        pattern=(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name")))
    secrets: tuple[str, ...] = field(default=(), metadata=key(
        "names of the secrets the container gets as environment variables (values: `zdd-tui secret set NAME`)"))


@dataclass(frozen=True)
class ProxyConfig:
    image: str = field(default="traefik:v3.7.15", metadata=key(
        "local-swap: the proxy's image on the droplets (official Traefik, pinned)",
        pattern=(r"\S+", "an image reference")))
    port: int = field(default=9180, metadata=key(
        "the proxy's ping, metrics and read-only API, on the host's loopback only", bounds=PORT))
    slot_a_port: int = field(default=8081, metadata=key(
        "local-swap: the app's port in slot a, on the host's loopback", bounds=PORT))
    slot_b_port: int = field(default=8082, metadata=key(
        "local-swap: the app's port in slot b, on the host's loopback", bounds=PORT))


@dataclass(frozen=True)
class BuildConfig:
    dockerfile: str = field(default="Dockerfile", metadata=key(
        "Dockerfile path, relative to the context", pattern=(r".+", "a Dockerfile path")))
    context: str = field(default=".", metadata=key(
        "build context directory, inside the project (sent whole to the Docker daemon)",
        pattern=(r".+", "a build context directory"), check=inside_project_problem))
    args: dict[str, str] = field(default_factory=dict, metadata=key("docker build arguments (NAME: value)"))


@dataclass(frozen=True)
class CanaryConfig:
    enabled: bool | None = field(default=None, metadata=key(
        "local-swap: the first batch soaks under real traffic and is judged against the hosts still "
        "on the old version before the rest follow; unset: on for fleets of 3 or more"))
    warmup_seconds: int = field(default=10, metadata=key(
        "the first batch serves this long after its switch, shown but not judged, before the soak "
        "begins: a freshly started process answers its first seconds slower (the sample service: up "
        "to 2 s, its first requests 2-4x slower; 10 leaves room for apps that fill caches or pools "
        "first); 0: judged from the switch", bounds=Range(0, 600)))
    soak_seconds: int = field(default=60, metadata=key(
        "how long the first batch serves, after its warm-up, before it is judged", bounds=Range(5, 3600)))
    min_requests: int = field(default=200, metadata=key(
        "requests each side (canary, old version) must have served in the soak before it is judged",
        bounds=AT_LEAST_1))
    max_error_rate_increase: float = field(default=0.01, metadata=key(
        "the canary's share of 5xx answers may exceed the old version's by at most this (0.01: one "
        "point in a hundred)", bounds=Range(0, 1)))
    max_latency_ratio: float = field(default=1.5, metadata=key(
        "the canary's p95 latency may be at most this many times the old version's",
        bounds=Range(1, 100)))
    latency_floor_ms: int = field(default=50, metadata=key(
        "an old-version p95 below this counts as this, so jitter on fast requests is not a failure",
        bounds=Range(0, 60_000)))
    on_insufficient_traffic: str = field(default="proceed", metadata=key("", choices={
        "proceed": "too few requests to judge: say so and deploy the rest",
        "halt": "too few requests to judge: put the canary back on the old version and halt"}))


@dataclass(frozen=True)
class DeployConfig:
    strategy: str = field(default="local-swap", metadata=key("", choices={
        "local-swap": "a proxy on each host swaps old for new locally; the host never leaves the LB",
        "lb-drain": "drain each host out of the load balancer, replace, bring back (needs the admin contract)"}))
    batch_size: int = field(default=1, metadata=key(
        "hosts replaced at a time (always fewer than the droplets)", bounds=AT_LEAST_1))
    pull_timeout_seconds: int = field(default=300, metadata=key(
        "limit for pulling the new image on a host", bounds=AT_LEAST_1))
    start_timeout_seconds: int = field(default=60, metadata=key(
        "limit for the new container to report healthy", bounds=AT_LEAST_1))
    stop_grace_seconds: int = field(default=30, metadata=key(
        "SIGTERM to SIGKILL: time for in-flight requests to finish", bounds=AT_LEAST_1))
    margin_seconds: int = field(default=5, metadata=key(
        "added to the waits derived from the health check settings", bounds=Range(0)))
    retain: int = field(default=3, metadata=key(
        "local-swap: stopped containers kept per host, so a rollback to them needs no pull",
        bounds=Range(1, 20)))
    release_command: tuple[str, ...] = field(default=(), metadata=key(
        "argv run once per deploy in a one-off container of the new image (e.g. migrations), "
        "before any host changes; a failure refuses the deploy"))
    release_timeout_seconds: int = field(default=600, metadata=key(
        "limit for the release command", bounds=AT_LEAST_1))
    canary: CanaryConfig = field(default_factory=CanaryConfig, metadata=key(
        "local-swap: judge the new version on the first batch before the fleet gets it"))


@dataclass(frozen=True)
class SSHConfig:
    user: str = field(default="root", metadata=key(
        "SSH user on the droplets", pattern=(r"[a-z_][a-z0-9_-]*", "a Unix user name")))
    port: int = field(default=22, metadata=key("SSH port", bounds=PORT))
    state_dir: str = field(default="/var/lib/zdd", metadata=key(
        "deploy lock and journal on each host", pattern=(r"/.*", "an absolute path on the hosts")))
    connect_timeout_seconds: int = field(default=10, metadata=key("SSH connection timeout", bounds=AT_LEAST_1))


@dataclass(frozen=True)
class SandboxConfig:
    """Present only in a zdd.yaml written by `zdd-tui sandbox up`."""

    state_dir: str = field(default="", metadata=key(
        "the sandbox's state directory", pattern=(r".+", "the sandbox's state directory")))


@dataclass(frozen=True)
class Config:
    app: str = field(default="app", metadata=key(
        "application name: container name and state directory on the hosts",
        pattern=(_DOCKER_NAME, "a name of letters, digits, '_', '.', '-' that starts with a letter or digit")))
    context: str = field(default="default", metadata=key(
        "credentials context in the OS keyring (`zdd-tui login --context NAME`)",
        pattern=(_DOCKER_NAME, "a context name of letters, digits, '_', '.', '-'")))
    runtime: str = field(default="ssh", metadata=key("", choices={
        "ssh": "Docker over SSH on droplets", "sandbox": "the local sandbox's hosts"}))
    digitalocean: DigitalOceanConfig = field(default_factory=DigitalOceanConfig, metadata=key(
        "DigitalOcean account and region"))
    droplets: DropletsConfig = field(default_factory=DropletsConfig, metadata=key(
        "the hosts that run the service (found by tag)"))
    load_balancer: LoadBalancerConfig = field(default_factory=LoadBalancerConfig, metadata=key(
        "the DigitalOcean load balancer in front of the droplets"))
    registry: RegistryConfig = field(default_factory=RegistryConfig, metadata=key(
        "the container registry the hosts pull from"))
    service: ServiceConfig = field(default_factory=ServiceConfig, metadata=key("the container on each droplet"))
    build: BuildConfig = field(default_factory=BuildConfig, metadata=key("`zdd-tui build`: docker build of the image"))
    deploy: DeployConfig = field(default_factory=DeployConfig, metadata=key("the rolling deploy"))
    proxy: ProxyConfig = field(default_factory=ProxyConfig, metadata=key(
        "local-swap: the proxy on each droplet, in front of the app's two slots"))
    ssh: SSHConfig = field(default_factory=SSHConfig, metadata=key("how zdd-tui reaches the droplets"))
    sandbox: SandboxConfig | None = field(default=None, metadata=key(
        "the local sandbox (written by `zdd-tui sandbox up`)"))
    path: Path | None = field(default=None, compare=False)  # where it was loaded from; not a key

    # Derived values every layer uses; kept here so nobody recomputes them differently.
    @property
    def target_port(self) -> int:
        return self.load_balancer.target_port or self.service.port

    @property
    def health_port(self) -> int:
        return self.load_balancer.health_check.port or self.service.port

    @property
    def container_name(self) -> str:
        return self.service.container_name or self.app

    @property
    def image_repo(self) -> str:
        """`registry.digitalocean.com/<registry>/<repository>` (the sandbox uses its own host)."""
        return f"{self.registry.server}/{self.registry.name}/{self.registry.repository}"

    @property
    def is_sandbox(self) -> bool:
        return self.runtime == "sandbox"


def keys_of(cls: type) -> list[tuple[str, Key]]:
    """The keys a section accepts, in order, with their Key records."""
    return [(f.name, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def key_paths(cls: type | None = None, prefix: str = "") -> Iterator[tuple[str, Key, type | None]]:
    """Every key of the schema, sections included, depth first: (dotted path, Key, section class or None)."""
    cls = cls or Config
    hints = typing.get_type_hints(cls)
    for name, rule in keys_of(cls):
        path = prefix + name
        inner = _section_class(hints[name])
        yield path, rule, inner
        if inner is not None:
            yield from key_paths(inner, path + ".")


def key_for(path: str) -> Key:
    """The Key of a dotted path, e.g. key_for("registry.name"); KeyError for an unknown path."""
    for p, rule, _ in key_paths():
        if p == path:
            return rule
    raise KeyError(path)


def schema_paths(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every leaf key path of the schema (sections left out), in order."""
    return [path for path, _, inner in key_paths(cls, prefix) if inner is None]


def _section_class(tp: object) -> type | None:
    """The dataclass a field's type names (`X` or `X | None`), or None for a plain value."""
    inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return inner[0] if len(inner) == 1 and isinstance(inner[0], type) and dataclasses.is_dataclass(inner[0]) else None


# ---- loading ------------------------------------------------------------------------------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

# Secrets never belong in zdd.yaml (it is committed to git). Keys and values that look like one.
_SECRET_KEY = re.compile(
    r"token|passw(or)?d|passphrase|secret|credential|private[_-]?key|api[_-]?key|access[_-]?key|ssh[_-]?key",
    re.IGNORECASE,
)
# Keys whose names say "secret" and whose values are only names of secrets.
_NAMES_OF_SECRETS = frozenset({"service.secrets"})
SECRETS_HINT = (
    "secrets never go in zdd.yaml: store the DigitalOcean token with `zdd-tui login` and the SSH key "
    "with `zdd-tui login --ssh-key FILE` (both go to the OS keyring), or set DIGITALOCEAN_TOKEN / "
    "ZDD_SSH_PRIVATE_KEY in CI"
)

_TAG = "tag:yaml.org,2002:"


def _secrets_hint(path: str) -> str:
    """Where the secret found at `path` belongs instead."""
    return APP_SECRETS_HINT if path.startswith("service.env.") else SECRETS_HINT


def _describe(node: Node) -> str:
    """What was found, for messages; never echoes a secret-looking value."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = node.tag.removeprefix(_TAG)
    if tag == "null":
        return "nothing (an empty value)"
    if _secret_kind(node.value):
        return "a secret-looking value (not shown)"
    shown = node.value if len(node.value) <= 60 else node.value[:57] + "..."
    kind = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(tag, f"!!{tag}")
    return f"{kind} {shown!r}" if kind == "string" else f"{kind} {shown}"


class _Loader:
    """Walks the composed YAML node tree against the dataclass schema, collecting every issue."""

    def __init__(self, file: str):
        self.file = file
        self.issues: list[ConfigIssue] = []
        self.nodes: dict[str, Node] = {}  # key path -> value node (for cross-field messages)
        self.keys: dict[str, Node] = {}  # key path -> key node
        self.secret_keys: set[int] = set()
        self._constructor = SafeConstructor()

    def issue(self, node: Node | None, key: str, expected: str, found: str, hint: str | None = None) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        col = node.start_mark.column + 1 if node is not None else 0
        self.issues.append(ConfigIssue(self.file, line, col, key, expected, found, hint))

    # -- secrets: a pass over the whole tree, before the schema, so nothing else echoes them --
    def scan_secrets(self, node: Node, path: str) -> None:
        if isinstance(node, MappingNode):
            for k, v in node.value:
                name = k.value if isinstance(k, ScalarNode) else "?"
                sub = f"{path}.{name}" if path else name
                if isinstance(k, ScalarNode) and _SECRET_KEY.search(name) and sub not in _NAMES_OF_SECRETS:
                    self.secret_keys.add(id(k))
                    self.issue(k, sub, "no secrets in zdd.yaml", f"a key named {name!r} that looks like a secret",
                               _secrets_hint(sub))
                    continue
                self.scan_secrets(v, sub)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self.scan_secrets(item, f"{path}[{i}]")
        elif isinstance(node, ScalarNode) and node.tag == _TAG + "str":
            kind = _secret_kind(node.value)
            if kind:
                self.issue(node, path or "(document)", "no secrets in zdd.yaml", f"{kind}; the value is not shown",
                           _secrets_hint(path))

    # -- schema --
    def section(self, cls: type, node: Node, path: str):
        hints = typing.get_type_hints(cls)
        rules = dict(keys_of(cls))
        names = list(rules)
        if not isinstance(node, MappingNode):
            self.issue(node, path or "(document)", f"a mapping with keys {', '.join(names)}", _describe(node))
            return cls()
        kwargs: dict = {}
        seen: dict[str, Node] = {}
        for k, v in node.value:
            if not (isinstance(k, ScalarNode) and k.tag == _TAG + "str"):
                self.issue(k, path or "(document)", "a key name", _describe(k))
                continue
            name = k.value
            sub = f"{path}.{name}" if path else name
            if name in seen:
                first = seen[name].start_mark.line + 1
                self.issue(k, sub, "each key once", f"a second {name!r} (the first is on line {first})")
                continue
            seen[name] = k
            if id(k) in self.secret_keys:
                continue
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else None
                where = f"in {path}" if path else "at the top level"
                self.issue(k, sub, f"one of the keys allowed {where}: {', '.join(names)}", f"unknown key {name!r}",
                           hint)
                continue
            self.keys[sub] = k
            self.nodes[sub] = v
            value = self.value(hints[name], v, sub, rules[name])
            if value is not _BAD:
                kwargs[name] = value
        return cls(**kwargs)

    def scalar(self, node: ScalarNode):
        try:
            return self._constructor.construct_object(node, deep=True)
        except ConstructorError:
            return _BAD

    def value(self, tp, node: Node, path: str, rule: Key):
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self.section(tp, node, path)
        if origin in (typing.Union, types.UnionType):
            if isinstance(node, ScalarNode) and node.tag == _TAG + "null":
                return None
            inner = next(a for a in args if a is not type(None))
            return self.value(inner, node, path, rule)
        if tp is int:
            v = self.scalar(node) if isinstance(node, ScalarNode) and node.tag == _TAG + "int" else _BAD
            if v is _BAD:
                bounds = rule.bounds.text() if rule.bounds else ""
                self.issue(node, path, "an integer" + bounds, _describe(node), _quote_hint(node, "int"))
                return _BAD
            return self.check(v, node, path, rule)
        if tp is bool:
            v = self.scalar(node) if isinstance(node, ScalarNode) and node.tag == _TAG + "bool" else _BAD
            if v is _BAD:
                self.issue(node, path, "true or false", _describe(node), _quote_hint(node, "bool"))
            return v
        if tp is float:
            # An integer is a number too (`max_latency_ratio: 2`).
            number = isinstance(node, ScalarNode) and node.tag in (_TAG + "float", _TAG + "int")
            v = self.scalar(node) if number and isinstance(node, ScalarNode) else _BAD
            if not isinstance(v, int | float) or not math.isfinite(v):
                bounds = rule.bounds.text() if rule.bounds else ""
                self.issue(node, path, "a number" + bounds, _describe(node), _quote_hint(node, "float"))
                return _BAD
            return self.check(float(v), node, path, rule)
        if tp is str:
            if not (isinstance(node, ScalarNode) and node.tag == _TAG + "str"):
                self.issue(node, path, "a string", _describe(node), _quote_hint(node, "str"))
                return _BAD
            return self.check(node.value, node, path, rule)
        if origin is tuple:
            if not isinstance(node, SequenceNode):
                self.issue(node, path, "a list of strings", _describe(node))
                return _BAD
            items = []
            for i, item in enumerate(node.value):
                if not (isinstance(item, ScalarNode) and item.tag == _TAG + "str"):
                    self.issue(item, f"{path}[{i}]", "a string", _describe(item), _quote_hint(item, "str"))
                    return _BAD
                items.append(item.value)
            return tuple(items)
        if origin is dict:
            if not isinstance(node, MappingNode):
                self.issue(node, path, "a mapping of NAME: value", _describe(node))
                return _BAD
            mapping: dict[str, str] = {}
            for k, v in node.value:
                if id(k) in self.secret_keys:
                    continue
                name = k.value if isinstance(k, ScalarNode) else ""
                if not _ENV_NAME.fullmatch(name):
                    self.issue(k, f"{path}.{name}", "a variable name (letters, digits, '_')", _describe(k))
                    continue
                if not isinstance(v, ScalarNode) or v.tag == _TAG + "null":
                    self.issue(v, f"{path}.{name}", "a value (string or number)", _describe(v))
                    continue
                mapping[name] = v.value  # the text as written: `PORT: 8080` -> "8080"
            return mapping
        raise TypeError(f"config schema type {tp!r} at {path} has no loader")  # a bug in the schema

    def check(self, v, node: Node, path: str, rule: Key):
        expected = rule.problem(v)
        if expected is None:
            return v
        hint = None
        if rule.choices and isinstance(v, str):
            close = difflib.get_close_matches(v, rule.choice_names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
        self.issue(node, path, expected, f"{v:g}" if isinstance(v, int | float) else _describe(node), hint)
        return _BAD

    # -- rules across fields --
    def _distinct_ports(self, cfg: Config) -> None:
        """Every port a host listens on for the app is its own: the proxy or the public port on a
        slot's port (or the admin port on either) could not both bind it."""
        ports = (
            ("service.port", cfg.service.port),
            ("service.admin_port", cfg.service.admin_port),
            ("proxy.port", cfg.proxy.port),
            ("proxy.slot_a_port", cfg.proxy.slot_a_port),
            ("proxy.slot_b_port", cfg.proxy.slot_b_port),
        )
        for i, (path, value) in enumerate(ports):
            for other, other_value in ports[:i]:
                if value != other_value:
                    continue
                # Blame the key the file sets (a default the user never wrote cannot be the mistake).
                if path not in self.nodes and other in self.nodes:
                    path, other = other, path
                self.issue(self.nodes.get(path), path, f"a port other than {other} ({other_value})", str(value),
                           "each of service.port, service.admin_port, proxy.port, proxy.slot_a_port and "
                           "proxy.slot_b_port is bound on the host by a different listener")
                break

    def cross_checks(self, cfg: Config) -> None:
        port = cfg.service.port
        why = (
            "containers use host networking, so the service listens on service.port on each droplet "
            "and the load balancer must send traffic and health checks there; leave it out to use service.port"
        )
        for path, value in (
            ("load_balancer.target_port", cfg.load_balancer.target_port),
            ("load_balancer.health_check.port", cfg.load_balancer.health_check.port),
        ):
            if value is not None and value != port:
                self.issue(self.nodes.get(path), path, f"{port} (service.port)", str(value), why)
        self._distinct_ports(cfg)
        if cfg.runtime == "sandbox" and cfg.sandbox is None:
            self.issue(self.nodes.get("runtime"), "sandbox", "a sandbox section with state_dir when runtime is sandbox",
                       "no sandbox section", "`zdd-tui sandbox up` writes a zdd.yaml with it")
        if cfg.runtime != "sandbox" and cfg.sandbox is not None:
            self.issue(self.keys.get("sandbox"), "sandbox", "no sandbox section unless runtime is sandbox",
                       f"a sandbox section with runtime {cfg.runtime!r}",
                       "remove the sandbox section, or set runtime: sandbox")
        names_node = self.nodes.get("droplets.names")
        items = names_node.value if isinstance(names_node, SequenceNode) else []
        if not cfg.droplets.names:
            self.issue(names_node, "droplets.names", "at least one droplet name", "an empty list")
        first: dict[str, int] = {}
        for i, name in enumerate(cfg.droplets.names):
            node = items[i] if i < len(items) else names_node
            if not _is_hostname(name):
                self.issue(node, f"droplets.names[{i}]",
                           "a valid hostname (labels of letters, digits, '-', not starting or ending with '-', "
                           "separated by '.')", _describe(node) if node else repr(name))
            elif name in first:
                self.issue(node, f"droplets.names[{i}]", "unique droplet names",
                           f"{name!r} again (also droplets.names[{first[name]}])")
            first.setdefault(name, i)
        self.secret_names(cfg)
        n = len(cfg.droplets.names)
        if n > 1 and cfg.deploy.batch_size >= n:
            self.issue(self.nodes.get("deploy.batch_size"), "deploy.batch_size",
                       f"at most {n - 1} with {n} droplets", str(cfg.deploy.batch_size),
                       "a batch must leave the load balancer at least one healthy droplet")

    def secret_names(self, cfg: Config) -> None:
        node = self.nodes.get("service.secrets")
        items = node.value if isinstance(node, SequenceNode) else []
        seen: dict[str, int] = {}
        for i, name in enumerate(cfg.service.secrets):
            at = items[i] if i < len(items) else node
            problem = _secret_name_problem(name)
            if problem is not None:
                problem = f"a valid secret name ({problem})"
            if problem is None and name in cfg.service.env:
                problem = f"a name not also in service.env ({name} is there)"
            if problem is None and name == cfg.service.port_env:
                problem = f"a name other than service.port_env ({name})"
            if problem is None and name in seen:
                problem = f"each name once (also service.secrets[{seen[name]}])"
            if problem:
                self.issue(at, f"service.secrets[{i}]", problem, repr(name))
            seen.setdefault(name, i)


_BAD = object()


def _quote_hint(node: Node, want: str) -> str | None:
    if want == "str" and isinstance(node, ScalarNode) and node.tag != _TAG + "null":
        kinds = {"int": "an integer", "float": "a number", "bool": "a boolean"}
        kind = kinds.get(node.tag.removeprefix(_TAG), "another type")
        return f"YAML reads {node.value} as {kind}; quote it: \"{node.value}\""
    if want in ("int", "float", "bool") and isinstance(node, ScalarNode) and node.tag == _TAG + "str" \
            and node.style in ("'", '"'):
        return "remove the quotes"
    return None


def _is_hostname(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


class _Aliased(Exception):
    """An anchor (&name) or alias (*name) at `key` (a key path); `line`, `column` 1-based."""

    def __init__(self, what: str, key: str, mark: object):
        super().__init__(what)
        self.what = what
        self.key = key
        self.line = getattr(mark, "line", -1) + 1
        self.column = getattr(mark, "column", -1) + 1


class _PlainLoader(yaml.SafeLoader):
    """The safe loader without anchors and aliases: a zdd.yaml needs neither, and aliases nest
    into trees exponentially larger than the text (a few hundred bytes would keep the secret scan
    and validation busy for hours). The first one found stops the composing, so a refusal costs
    no more than reading up to it."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._paths: list[str] = []  # key path of each node being composed, innermost last

    def compose_node(self, parent: Node | None, index: typing.Any) -> Node | None:
        # The composer passes a mapping value's key node, a list item's position, or None.
        base = self._paths[-1] if self._paths else ""
        if isinstance(index, ScalarNode):
            path = f"{base}.{index.value}" if base else str(index.value)
        elif isinstance(index, int) and isinstance(parent, SequenceNode):
            path = f"{base}[{index}]"
        else:
            path = base
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise _Aliased(f"an alias *{event.anchor}", path or "(document)", event.start_mark)
        if isinstance(event, NodeEvent) and event.anchor is not None:
            raise _Aliased(f"an anchor &{event.anchor}", path or "(document)", event.start_mark)
        self._paths.append(path)
        try:
            return super().compose_node(parent, index)
        finally:
            self._paths.pop()


def _key_near(text: str, line: int) -> str:
    """The key path of the last key before a YAML syntax error (the text above it still parses)."""
    lines = text.splitlines()
    for n in range(min(line, len(lines) + 1) - 1, 0, -1):
        try:
            root = yaml.compose("\n".join(lines[:n]), Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            continue
        best: tuple[int, str] = (-1, "(document)")
        stack: list[tuple[Node | None, str]] = [(root, "")]
        seen: set[int] = set()  # an alias shares its node: walk each once
        while stack:
            node, path = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, MappingNode):
                for k, v in node.value:
                    sub = f"{path}.{k.value}" if path else str(k.value)
                    best = max(best, (k.start_mark.line, sub))
                    stack.append((v, sub))
        return f"near {best[1]}" if best[0] >= 0 else "(document)"
    return "(document)"


# ---- public API -----------------------------------------------------------------------------------


def parse_config(text: str, file: str = "zdd.yaml") -> Config:
    """Validate YAML text as a config; raises ConfigError listing every problem found."""
    try:
        root = yaml.compose(text, Loader=_PlainLoader)
    except _Aliased as e:
        issue = ConfigIssue(file, e.line, e.column, e.key, "no YAML anchors or aliases (&name, *name)", e.what,
                            "write each value out in full")
        raise ConfigError(str(issue), issues=[issue]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        context = e.context
        if context and e.context_mark and e.context_mark.line + 1 != line:
            context += f" that starts on line {e.context_mark.line + 1}, column {e.context_mark.column + 1},"
        problem = " ".join(p for p in (context, e.problem) if p)
        issue = ConfigIssue(file, line, col, _key_near(text, line), "valid YAML", f"malformed YAML: {problem}",
                            "check the indentation, colons, quotes and brackets on or just before that line")
        raise ConfigError(str(issue), issues=[issue]) from None
    except yaml.YAMLError as e:  # e.g. a reader error for a control character
        issue = ConfigIssue(file, 0, 0, "(document)", "valid YAML", f"unreadable YAML: {e}")
        raise ConfigError(str(issue), issues=[issue]) from None
    if root is None or (isinstance(root, ScalarNode) and root.tag == _TAG + "null"):
        issue = ConfigIssue(file, 1, 1, "(document)", "a mapping of settings (app, droplets, load_balancer, ...)",
                            "an empty file" if not text.strip() else "no settings (only comments)",
                            "run `zdd-tui init --force` to write a commented zdd.yaml with every setting")
        raise ConfigError(str(issue), issues=[issue])
    loader = _Loader(file)
    loader.scan_secrets(root, "")
    cfg = loader.section(Config, root, "")
    if not loader.issues:
        loader.cross_checks(cfg)
    if loader.issues:
        issues = sorted(loader.issues, key=lambda i: (i.line, i.column))
        head = f"{file}: {len(issues)} problems:\n" if len(issues) > 1 else ""
        body = "\n".join(("  " if head else "") + str(i) for i in issues)
        raise ConfigError(head + body, issues=issues)
    return cfg


def load_config(path: str | Path = DEFAULT_CONFIG_PATH) -> Config:
    """Read and validate a zdd.yaml; raises ConfigError with file, line, key path, expected, found."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (zdd-tui reads its settings from a zdd.yaml project file)",
            "run `zdd-tui init` in the project directory to write one, or pass --config PATH",
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a zdd.yaml file", "pass --config PATH/zdd.yaml") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        found = f"a byte that is not UTF-8 at offset {e.start}"
        issue = ConfigIssue(str(path), line, 0, "(document)", "UTF-8 text", found)
        raise ConfigError(str(issue), issues=[issue]) from None
    return dataclasses.replace(parse_config(text, str(path)), path=path)


def config_to_dict(config: Config) -> dict:
    """Plain data (lists, dicts, scalars) in schema order; `sandbox` only when set."""

    def plain(obj):
        if dataclasses.is_dataclass(obj):
            return {name: plain(getattr(obj, name)) for name, _ in keys_of(type(obj))}
        if isinstance(obj, tuple):
            return [plain(x) for x in obj]
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        return obj

    data = plain(config)
    if data.get("sandbox") is None:
        data.pop("sandbox", None)
    return data


def dump_config(config: Config) -> str:
    """YAML that `parse_config`/`load_config` read back to an equal Config."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False, allow_unicode=True)
