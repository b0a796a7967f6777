"""The project file, zdd.yaml: schema, defaults and loading.

The schema is a tree of frozen dataclasses; every field has a default where one makes sense.
`load_config(path)` parses and validates the file and raises `ConfigError` naming the file,
line, key path, what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from zdd_tui.errors import UsageError

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


@dataclass(frozen=True)
class DigitalOceanConfig:
    api_url: str = DEFAULT_API_URL
    region: str = "nyc3"


@dataclass(frozen=True)
class DropletsConfig:
    tag: str = "zdd-app"
    names: tuple[str, ...] = ("app-1", "app-2")
    size: str = "s-1vcpu-1gb"
    image: str = "debian-12-x64"


@dataclass(frozen=True)
class HealthCheckConfig:
    # DigitalOcean's ranges: interval 3-300, timeout 3-300, thresholds 2-10.
    protocol: str = "http"
    path: str = "/health"
    port: int | None = None  # None: the service port
    check_interval_seconds: int = 10
    response_timeout_seconds: int = 5
    unhealthy_threshold: int = 3
    healthy_threshold: int = 5


@dataclass(frozen=True)
class LoadBalancerConfig:
    name: str = "zdd-app-lb"
    size_unit: int = 1
    entry_port: int = 80
    target_port: int | None = None  # None: the service port (containers use host networking)
    health_check: HealthCheckConfig = field(default_factory=HealthCheckConfig)


@dataclass(frozen=True)
class RegistryConfig:
    name: str = "zdd-registry"
    repository: str = "app"
    server: str = "registry.digitalocean.com"  # a lab points this at its own registry
    tier: str = "starter"  # starter | basic | professional
    region: str | None = None  # None: DigitalOcean's default for registries


@dataclass(frozen=True)
class ServiceConfig:
    port: int = 8080  # the port the service listens on (host networking)
    admin_port: int = 9090  # admin endpoints, bound to the host's 127.0.0.1 only
    container_name: str | None = None  # None: the app name
    env: dict[str, str] = field(default_factory=dict)  # non-secret environment for the container


@dataclass(frozen=True)
class BuildConfig:
    dockerfile: str = "Dockerfile"
    context: str = "."
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployConfig:
    strategy: str = "lb-drain"
    batch_size: int = 1
    pull_timeout_seconds: int = 300
    start_timeout_seconds: int = 60  # the new container's own health
    stop_grace_seconds: int = 30  # SIGTERM -> SIGKILL
    margin_seconds: int = 5  # added to the bounds derived from the LB's settings


@dataclass(frozen=True)
class SSHConfig:
    user: str = "root"
    port: int = 22
    state_dir: str = "/var/lib/zdd"  # lock and journal on each host
    connect_timeout_seconds: int = 10


@dataclass(frozen=True)
class SandboxConfig:
    """Present only in a zdd.yaml written by `zdd-tui sandbox up`."""

    state_dir: str = ""


@dataclass(frozen=True)
class Config:
    app: str = "app"
    context: str = "default"  # credentials context (like doctl's)
    runtime: str = "ssh"  # ssh: Docker over SSH on droplets; sandbox: the local sandbox's hosts
    digitalocean: DigitalOceanConfig = field(default_factory=DigitalOceanConfig)
    droplets: DropletsConfig = field(default_factory=DropletsConfig)
    load_balancer: LoadBalancerConfig = field(default_factory=LoadBalancerConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    ssh: SSHConfig = field(default_factory=SSHConfig)
    sandbox: SandboxConfig | None = None
    path: Path | None = field(default=None, compare=False)  # where it was loaded from

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


# ---- validation rules ----------------------------------------------------------------------------
# Keyed by dotted path. Ranges for health checks are DigitalOcean's own (the API rejects others).

_DO_RANGE = "DigitalOcean's allowed range"
_INT_RANGES: dict[str, tuple[int, int | None, str | None]] = {
    "load_balancer.size_unit": (1, 100, _DO_RANGE),
    "load_balancer.entry_port": (1, 65535, None),
    "load_balancer.target_port": (1, 65535, None),
    "load_balancer.health_check.port": (1, 65535, None),
    "load_balancer.health_check.check_interval_seconds": (3, 300, _DO_RANGE),
    "load_balancer.health_check.response_timeout_seconds": (3, 300, _DO_RANGE),
    "load_balancer.health_check.unhealthy_threshold": (2, 10, _DO_RANGE),
    "load_balancer.health_check.healthy_threshold": (2, 10, _DO_RANGE),
    "service.port": (1, 65535, None),
    "service.admin_port": (1, 65535, None),
    "deploy.batch_size": (1, None, None),
    "deploy.pull_timeout_seconds": (1, None, None),
    "deploy.start_timeout_seconds": (1, None, None),
    "deploy.stop_grace_seconds": (1, None, None),
    "deploy.margin_seconds": (0, None, None),
    "ssh.port": (1, 65535, None),
    "ssh.connect_timeout_seconds": (1, None, None),
}

RUNTIMES = ("ssh", "sandbox")
STRATEGIES = ("lb-drain",)
_CHOICES: dict[str, tuple[str, ...]] = {
    "runtime": RUNTIMES,
    "load_balancer.health_check.protocol": ("http", "https"),
    "deploy.strategy": STRATEGIES,
    "registry.tier": ("starter", "basic", "professional"),
}

_DOCKER_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"  # Docker's container-name rule
_SLUG = r"[a-z0-9][a-z0-9-]*"
_PATTERNS: dict[str, tuple[str, str]] = {
    "app": (_DOCKER_NAME, "a name of letters, digits, '_', '.', '-' that starts with a letter or digit"),
    "context": (_DOCKER_NAME, "a context name of letters, digits, '_', '.', '-'"),
    "digitalocean.region": (_SLUG, "a DigitalOcean region slug such as nyc3"),
    "droplets.tag": (r"[A-Za-z0-9_:-]{1,255}", "a DigitalOcean tag (letters, digits, ':', '-', '_')"),
    "droplets.size": (_SLUG, "a droplet size slug such as s-1vcpu-1gb"),
    "droplets.image": (r"[a-z0-9][a-z0-9._-]*", "an image slug such as debian-12-x64"),
    "load_balancer.name": (r"[A-Za-z0-9][A-Za-z0-9.-]*", "a load balancer name (letters, digits, '.', '-')"),
    "load_balancer.health_check.path": (r"/\S*", "an absolute URL path starting with '/'"),
    "registry.name": (r"[a-z0-9][a-z0-9-]{0,62}", "a registry name (lowercase letters, digits, '-', up to 63)"),
    "registry.repository": (r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
                            "a repository name (lowercase letters, digits, '.', '_', '-', '/')"),
    "registry.server": (r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?", "a registry host[:port]"),
    "registry.region": (_SLUG, "a DigitalOcean region slug such as fra1"),
    "service.container_name": (_DOCKER_NAME, "a Docker container name"),
    "ssh.user": (r"[a-z_][a-z0-9_-]*", "a Unix user name"),
    "ssh.state_dir": (r"/.*", "an absolute path on the hosts"),
    "sandbox.state_dir": (r".+", "the sandbox's state directory"),
    "build.dockerfile": (r".+", "a Dockerfile path"),
    "build.context": (r".+", "a build context directory"),
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

# Secrets never belong in zdd.yaml (it is committed to git). Keys and values that look like one.
_SECRET_KEY = re.compile(
    r"token|passw(or)?d|passphrase|secret|credential|private[_-]?key|api[_-]?key|access[_-]?key|ssh[_-]?key",
    re.IGNORECASE,
)
_SECRET_VALUES = (
    (re.compile(r"\bdo[opr]_v1_[0-9a-f]{64}\b"), "a DigitalOcean token (do?_v1_ and 64 hex digits)"),
    (re.compile(r"^[0-9a-f]{64}$"), "a DigitalOcean token (64 hex characters)"),
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"), "a private key (-----BEGIN ... PRIVATE KEY-----)"),
)
SECRETS_HINT = (
    "secrets never go in zdd.yaml: store the DigitalOcean token with `zdd-tui login` and the SSH key "
    "with `zdd-tui login --ssh-key FILE` (both go to the OS keyring), or set DIGITALOCEAN_TOKEN / "
    "ZDD_SSH_PRIVATE_KEY in CI"
)

_TAG = "tag:yaml.org,2002:"


def _secret_kind(value: str) -> str | None:
    for pattern, kind in _SECRET_VALUES:
        if pattern.search(value):
            return kind
    return None


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
                if isinstance(k, ScalarNode) and _SECRET_KEY.search(name):
                    self.secret_keys.add(id(k))
                    self.issue(k, sub, "no secrets in zdd.yaml", f"a key named {name!r} that looks like a secret", SECRETS_HINT)
                    continue
                self.scan_secrets(v, sub)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self.scan_secrets(item, f"{path}[{i}]")
        elif isinstance(node, ScalarNode) and node.tag == _TAG + "str":
            kind = _secret_kind(node.value)
            if kind:
                self.issue(node, path or "(document)", "no secrets in zdd.yaml", f"{kind}; the value is not shown", SECRETS_HINT)

    # -- schema --
    def section(self, cls: type, node: Node, path: str):
        hints = typing.get_type_hints(cls)
        names = _field_names(cls)
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
                self.issue(k, sub, "each key once", f"a second {name!r} (the first is on line {seen[name].start_mark.line + 1})")
                continue
            seen[name] = k
            if id(k) in self.secret_keys:
                continue
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else None
                where = f"in {path}" if path else "at the top level"
                self.issue(k, sub, f"one of the keys allowed {where}: {', '.join(names)}", f"unknown key {name!r}", hint)
                continue
            self.keys[sub] = k
            self.nodes[sub] = v
            value = self.value(hints[name], v, sub)
            if value is not _BAD:
                kwargs[name] = value
        return cls(**kwargs)

    def scalar(self, node: ScalarNode):
        try:
            return self._constructor.construct_object(node, deep=True)
        except ConstructorError:
            return _BAD

    def value(self, tp, node: Node, path: str):
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if dataclasses.is_dataclass(tp):
            return self.section(tp, node, path)
        if origin in (typing.Union, types.UnionType):
            if isinstance(node, ScalarNode) and node.tag == _TAG + "null":
                return None
            inner = next(a for a in args if a is not type(None))
            return self.value(inner, node, path)
        if tp is int:
            v = self.scalar(node) if isinstance(node, ScalarNode) and node.tag == _TAG + "int" else _BAD
            if v is _BAD:
                lo, hi, _ = _INT_RANGES.get(path, (None, None, None))
                self.issue(node, path, "an integer" + _range_text(lo, hi), _describe(node), _quote_hint(node, "int"))
                return _BAD
            return self.check_int(v, node, path)
        if tp is str:
            if not (isinstance(node, ScalarNode) and node.tag == _TAG + "str"):
                self.issue(node, path, "a string", _describe(node), _quote_hint(node, "str"))
                return _BAD
            return self.check_str(node.value, node, path)
        if origin is tuple:
            if not isinstance(node, SequenceNode):
                self.issue(node, path, "a list of strings", _describe(node))
                return _BAD
            out = []
            for i, item in enumerate(node.value):
                if not (isinstance(item, ScalarNode) and item.tag == _TAG + "str"):
                    self.issue(item, f"{path}[{i}]", "a string", _describe(item), _quote_hint(item, "str"))
                    return _BAD
                out.append(item.value)
            return tuple(out)
        if origin is dict:
            if not isinstance(node, MappingNode):
                self.issue(node, path, "a mapping of NAME: value", _describe(node))
                return _BAD
            out: dict[str, str] = {}
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
                out[name] = v.value  # the text as written: `PORT: 8080` -> "8080"
            return out
        raise TypeError(f"config schema type {tp!r} at {path} has no loader")  # a bug in the schema

    def check_int(self, v: int, node: Node, path: str):
        lo, hi, why = _INT_RANGES.get(path, (None, None, None))
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.issue(node, path, "an integer" + _range_text(lo, hi) + (f" ({why})" if why else ""), str(v))
            return _BAD
        return v

    def check_str(self, v: str, node: Node, path: str):
        if path in _CHOICES:
            choices = _CHOICES[path]
            if v not in choices:
                close = difflib.get_close_matches(v, choices, n=1)
                self.issue(node, path, "one of " + ", ".join(choices), _describe(node), f"did you mean {close[0]!r}?" if close else None)
                return _BAD
        if path in _PATTERNS:
            pattern, what = _PATTERNS[path]
            if not re.fullmatch(pattern, v):
                self.issue(node, path, what, _describe(node))
                return _BAD
        if path == "digitalocean.api_url":
            problem = api_url_problem(v)
            if problem:
                self.issue(node, path, problem, _describe(node))
                return _BAD
        return v

    # -- rules across fields --
    def cross_checks(self, cfg: "Config") -> None:
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
        if cfg.service.admin_port == port and "service.admin_port" in self.nodes:
            self.issue(self.nodes["service.admin_port"], "service.admin_port", f"a port other than service.port ({port})",
                       str(cfg.service.admin_port), "the admin port is bound to 127.0.0.1 only; the public port serves traffic")
        if cfg.runtime == "sandbox" and cfg.sandbox is None:
            self.issue(self.nodes.get("runtime"), "sandbox", "a sandbox section with state_dir when runtime is sandbox",
                       "no sandbox section", "`zdd-tui sandbox up` writes a zdd.yaml with it")
        if cfg.runtime != "sandbox" and cfg.sandbox is not None:
            self.issue(self.keys.get("sandbox"), "sandbox", "no sandbox section unless runtime is sandbox",
                       f"a sandbox section with runtime {cfg.runtime!r}", "remove the sandbox section, or set runtime: sandbox")
        names_node = self.nodes.get("droplets.names")
        items = names_node.value if isinstance(names_node, SequenceNode) else []
        if not cfg.droplets.names:
            self.issue(names_node, "droplets.names", "at least one droplet name", "an empty list")
        first: dict[str, int] = {}
        for i, name in enumerate(cfg.droplets.names):
            node = items[i] if i < len(items) else names_node
            if not _is_hostname(name):
                self.issue(node, f"droplets.names[{i}]", "a valid hostname (labels of letters, digits, '-', "
                           "not starting or ending with '-', separated by '.')", _describe(node) if node else repr(name))
            elif name in first:
                self.issue(node, f"droplets.names[{i}]", "unique droplet names",
                           f"{name!r} again (also droplets.names[{first[name]}])")
            first.setdefault(name, i)
        n = len(cfg.droplets.names)
        if n > 1 and cfg.deploy.batch_size >= n:
            self.issue(self.nodes.get("deploy.batch_size"), "deploy.batch_size",
                       f"at most {n - 1} with {n} droplets", str(cfg.deploy.batch_size),
                       "a batch must leave the load balancer at least one healthy droplet")


_BAD = object()


def _field_names(cls: type) -> list[str]:
    """The keys a section accepts (Config.path records where the file was, it is not a key)."""
    return [f.name for f in dataclasses.fields(cls) if f.init and not (cls is Config and f.name == "path")]


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" of at least {lo}"
    return ""


def _quote_hint(node: Node, want: str) -> str | None:
    if want == "str" and isinstance(node, ScalarNode) and node.tag != _TAG + "null":
        kind = {"int": "an integer", "float": "a number", "bool": "a boolean"}.get(node.tag.removeprefix(_TAG), "another type")
        return f"YAML reads {node.value} as {kind}; quote it: \"{node.value}\""
    if want == "int" and isinstance(node, ScalarNode) and node.tag == _TAG + "str" and node.style in ("'", '"'):
        return "remove the quotes"
    return None


def _is_hostname(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def api_url_problem(url: str) -> str | None:
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
        while stack:
            node, path = stack.pop()
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
        root = yaml.compose(text, Loader=yaml.SafeLoader)
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
        issue = ConfigIssue(str(path), line, 0, "(document)", "UTF-8 text", f"a byte that is not UTF-8 at offset {e.start}")
        raise ConfigError(str(issue), issues=[issue]) from None
    return dataclasses.replace(parse_config(text, str(path)), path=path)


def config_to_dict(config: Config) -> dict:
    """Plain data (lists, dicts, scalars) in schema order; `sandbox` only when set."""

    def plain(obj):
        if dataclasses.is_dataclass(obj):
            return {name: plain(getattr(obj, name)) for name in _field_names(type(obj))}
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


def schema_paths(cls: type = None, prefix: str = "") -> list[str]:
    """Every leaf key path of the schema (for `zdd-tui init` and the docs)."""
    cls = cls or Config
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for name in _field_names(cls):
        tp = hints[name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        sub = f"{prefix}{name}"
        target = tp if dataclasses.is_dataclass(tp) else (inner[0] if len(inner) == 1 and dataclasses.is_dataclass(inner[0]) else None)
        out.extend(schema_paths(target, sub + ".") if target else [sub])
    return out
