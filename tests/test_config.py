"""zdd.yaml: the corpus of bad files, round trips, and the rules across fields."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from zdd_tui.commands.init import comment, project_config, render
from zdd_tui.config import (
    BuildConfig,
    Config,
    ConfigError,
    DeployConfig,
    DigitalOceanConfig,
    DropletsConfig,
    HealthCheckConfig,
    Key,
    LoadBalancerConfig,
    ProxyConfig,
    RegistryConfig,
    SandboxConfig,
    ServiceConfig,
    SSHConfig,
    dump_config,
    key_for,
    key_paths,
    keys_of,
    load_config,
    parse_config,
    schema_paths,
)
from zdd_tui.errors import UsageError
from zdd_tui.setup.steps import validate_registry_name

from corpus import corpus_dir

CONFIGS = corpus_dir()
EXPECTED = yaml.safe_load((CONFIGS / "expected.yaml").read_text())


def test_every_corpus_file_has_an_expectation():
    files = {p.name for p in CONFIGS.glob("*.yaml")} - {"expected.yaml"}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_gives_its_precise_error(name):
    line, key, expected, found = EXPECTED[name]
    path = CONFIGS / name
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.exit_code == 2
    [issue] = err.value.issues  # exactly one problem, the intended one
    assert (issue.file, issue.line, issue.key) == (str(path), line, key)
    assert expected in issue.expected
    assert found in issue.found
    assert str(err.value).startswith(f"{path}:{line}:")  # the message leads with file:line:column


def test_typo_suggests_the_closest_key():
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "typo-key.yaml")
    assert "did you mean 'health_check'?" in str(err.value)


def test_secrets_are_never_echoed_and_the_hint_says_where_they_belong():
    for name in ("token-key.yaml", "token-value.yaml", "private-key.yaml"):
        text = (CONFIGS / name).read_text()
        secret = text.split(": ", 3)[-1].strip() if "dop_v1_" in text else "b3BlbnNzaC1rZXktdjEAAAAA"
        with pytest.raises(ConfigError) as err:
            load_config(CONFIGS / name)
        message = str(err.value)
        assert "dop_v1_" not in message and "b3BlbnNzaC1rZXktdjEAAAAA" not in message and secret not in message
        assert "zdd-tui login" in message and "OS keyring" in message


def test_secret_under_a_wrongly_typed_key_is_not_echoed():
    token = "dop_v1_" + "9" * 64
    with pytest.raises(ConfigError) as err:
        parse_config(f"service:\n  port: {token}\n")
    assert token not in str(err.value)
    assert "secret-looking value (not shown)" in str(err.value)


def test_missing_file_suggests_init(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "zdd.yaml")
    assert f"{tmp_path / 'zdd.yaml'}: no such file" in str(err.value)
    assert "zdd-tui init" in err.value.hint
    assert err.value.exit_code == 2


def test_not_utf8(tmp_path):
    p = tmp_path / "zdd.yaml"
    p.write_bytes(b"app: shop\nregion: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"zdd.yaml:2:0: \(document\): expected UTF-8 text"):
        load_config(p)


def test_several_problems_are_all_reported_in_line_order():
    with pytest.raises(ConfigError) as err:
        parse_config("ssh:\n  port: 0\nservice:\n  port: x\nbogus: 1\n", "f.yaml")
    assert [(i.line, i.key) for i in err.value.issues] == [(2, "ssh.port"), (4, "service.port"), (5, "bogus")]
    assert str(err.value).startswith("f.yaml: 3 problems:\n  f.yaml:2:9: ssh.port:")


def test_quoted_number_and_unquoted_string_hints():
    with pytest.raises(ConfigError) as err:
        parse_config("service:\n  port: '8080'\ndroplets:\n  tag: 2024\n")
    text = str(err.value)
    assert "service.port: expected an integer from 1 to 65535; found string '8080'\n    hint: remove the quotes" in text
    assert ('droplets.tag: expected a string; found integer 2024\n'
            '    hint: YAML reads 2024 as an integer; quote it: "2024"') in text


def test_booleans_are_not_integers():
    with pytest.raises(ConfigError, match=r"ssh\.port: expected an integer from 1 to 65535; found boolean true"):
        parse_config("ssh:\n  port: true\n")


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://api.digitalocean.com", True),
        ("http://127.0.0.1:8765", True),
        ("http://localhost:1", True),
        ("http://10.20.0.1:8080", True),  # a lab's private test network
        ("http://api.digitalocean.com", False),  # the token would cross the internet in clear
        ("ftp://api.digitalocean.com", False),
        ("api.digitalocean.com", False),
    ],
)
def test_api_url(url, ok):
    text = f"digitalocean:\n  api_url: {url}\n"
    if ok:
        assert parse_config(text).digitalocean.api_url == url
    else:
        with pytest.raises(ConfigError, match=r"digitalocean\.api_url: expected an https:// URL"):
            parse_config(text)


def test_health_port_must_be_the_service_port():
    expected = r"load_balancer\.health_check\.port: expected 9000 \(service\.port\); found 9001"
    with pytest.raises(ConfigError, match=expected):
        parse_config("service:\n  port: 9000\nload_balancer:\n  health_check:\n    port: 9001\n")
    cfg = parse_config("service:\n  port: 9000\nload_balancer:\n  target_port: 9000\n  health_check:\n    port: 9000\n")
    assert (cfg.target_port, cfg.health_port) == (9000, 9000)


def test_admin_port_differs_from_service_port():
    with pytest.raises(ConfigError, match=r"service.admin_port: expected a port other than service.port \(8080\)"):
        parse_config("service:\n  admin_port: 8080\n")


@pytest.mark.parametrize("text, message", [
    # the key the file sets is the one named, with the key it collides with
    ("proxy:\n  slot_a_port: 9180\n", r"proxy.slot_a_port: expected a port other than proxy.port \(9180\)"),
    ("proxy:\n  slot_b_port: 8080\n", r"proxy.slot_b_port: expected a port other than service.port \(8080\)"),
    ("service:\n  port: 8081\n", r"service.port: expected a port other than proxy.slot_a_port \(8081\)"),
    ("proxy:\n  port: 9090\n", r"proxy.port: expected a port other than service.admin_port \(9090\)"),
    ("proxy:\n  slot_a_port: 8500\n  slot_b_port: 8500\n",
     r"proxy.slot_b_port: expected a port other than proxy.slot_a_port \(8500\)"),
])
def test_the_ports_a_host_listens_on_are_pairwise_distinct(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(text)
    parse_config("proxy:\n  slot_a_port: 8500\n  slot_b_port: 8501\n")  # distinct: fine


def test_batch_must_leave_a_healthy_droplet():
    with pytest.raises(ConfigError, match=r"deploy\.batch_size: expected at most 1 with 2 droplets; found 2"):
        parse_config("deploy:\n  batch_size: 2\n")
    assert parse_config("droplets:\n  names: [solo]\ndeploy:\n  batch_size: 1\n").deploy.batch_size == 1


def test_env_values_keep_their_text_and_reject_bad_names():
    cfg = parse_config("service:\n  env:\n    PORT_HINT: 8080\n    FLAG: true\n    NAME: x\n")
    assert cfg.service.env == {"PORT_HINT": "8080", "FLAG": "true", "NAME": "x"}
    with pytest.raises(ConfigError, match=r"service.env.1BAD: expected a variable name"):
        parse_config("service:\n  env:\n    1BAD: x\n")


def test_partial_file_takes_defaults_and_derived_values():
    cfg = parse_config("app: shop\nservice:\n  port: 8085\n")
    assert cfg.droplets == DropletsConfig() and cfg.service.port == 8085
    assert (cfg.target_port, cfg.health_port, cfg.container_name, cfg.is_sandbox) == (8085, 8085, "shop", False)
    assert cfg.image_repo == "registry.digitalocean.com/zdd-registry/app"


def _custom() -> Config:
    """Every field different from its default (so a dropped field breaks the round trip)."""
    return Config(
        app="shop",
        context="prod",
        runtime="sandbox",
        digitalocean=DigitalOceanConfig(api_url="http://127.0.0.1:9999", region="fra1"),
        droplets=DropletsConfig(tag="shop", names=("shop-1", "shop-2", "shop-3"), size="s-2vcpu-2gb",
                                image="ubuntu-24-04-x64"),
        load_balancer=LoadBalancerConfig(
            name="shop-lb", size_unit=2, entry_port=8000, target_port=8085,
            health_check=HealthCheckConfig(protocol="https", path="/healthz", port=8085, check_interval_seconds=3,
                                           response_timeout_seconds=300, unhealthy_threshold=2, healthy_threshold=10),
        ),
        registry=RegistryConfig(name="shopreg", repository="team/shop", server="127.0.0.1:5000", tier="basic",
                                region="fra1"),
        service=ServiceConfig(port=8085, admin_port=9091, container_name="shop-web", env={"A": "1", "B": "two words"},
                              port_env="SHOP_PORT", secrets=("DATABASE_URL", "API_KEY")),
        build=BuildConfig(dockerfile="docker/Dockerfile", context="src", args={"BASE": "debian:12"}),
        deploy=DeployConfig(strategy="lb-drain", batch_size=2, pull_timeout_seconds=60, start_timeout_seconds=30,
                            stop_grace_seconds=10, margin_seconds=0, retain=5,
                            release_command=("python", "-m", "zdd_service", "migrate"), release_timeout_seconds=30),
        proxy=ProxyConfig(image="registry.example/traefik:v3.7.15", port=9181, slot_a_port=9201, slot_b_port=9202),
        ssh=SSHConfig(user="deploy", port=2222, state_dir="/srv/zdd", connect_timeout_seconds=3),
        sandbox=SandboxConfig(state_dir="/tmp/zdd-sandbox"),
    )


def test_the_custom_config_differs_from_the_defaults_in_every_section():
    for f in dataclasses.fields(Config):
        if f.name != "path":
            assert getattr(_custom(), f.name) != getattr(Config(), f.name), f.name


@pytest.mark.parametrize("cfg", [Config(), _custom()], ids=["defaults", "custom"])
def test_round_trip(cfg, tmp_path):
    text = dump_config(cfg)
    assert parse_config(text) == cfg
    p = tmp_path / "zdd.yaml"
    p.write_text(text)
    loaded = load_config(p)
    assert loaded == cfg and loaded.path == p
    assert dump_config(loaded) == text


def test_a_good_file_round_trips(tmp_path):
    p = tmp_path / "zdd.yaml"
    p.write_text("app: shop\nruntime: ssh\ndroplets:\n  names: [web-1, web-2]\n"
                 "load_balancer:\n  health_check:\n    path: /ready\n")
    cfg = load_config(p)
    assert cfg.droplets.names == ("web-1", "web-2") and cfg.load_balancer.health_check.path == "/ready"
    assert parse_config(dump_config(cfg)) == cfg


def test_init_template_covers_every_key_and_loads(tmp_path):
    project = tmp_path / "Shop API"
    cfg = project_config(project)
    text = render(cfg)
    assert parse_config(text) == cfg
    assert cfg.app == "shop-api" and cfg.droplets.names == ("shop-api-1", "shop-api-2")
    # the sandbox section renders too, when there is one
    sandboxed = dataclasses.replace(cfg, runtime="sandbox", sandbox=SandboxConfig(state_dir="/tmp/s"))
    assert parse_config(render(sandboxed)) == sandboxed


# ---- one definition per key: everything below reads the Key records in zdd_tui/config.py ----------


def _value_at(cfg, path: str):
    for name in path.split("."):
        cfg = getattr(cfg, name)
    return cfg


def _yaml_at(path: str, value) -> str:
    """A zdd.yaml that sets one key: `a.b: 1` -> "a:\n  b: 1\n"."""
    *sections, name = path.split(".")
    lines = [f"{'  ' * i}{s}:" for i, s in enumerate(sections)]
    return "\n".join([*lines, f"{'  ' * len(sections)}{name}: {value}"]) + "\n"


ALL_KEYS = [(path, rule) for path, rule, _ in key_paths()]


def test_every_field_is_a_key_with_an_explanation_except_where_the_file_was():
    sections = [Config] + [inner for _, _, inner in key_paths() if inner is not None]
    for cls in sections:
        unkeyed = [f.name for f in dataclasses.fields(cls) if f.name not in dict(keys_of(cls))]
        assert unkeyed == (["path"] if cls is Config else []), cls
    for path, rule in ALL_KEYS:
        assert isinstance(rule, Key) and comment(rule), path
    assert schema_paths() == [p for p, _, inner in key_paths() if inner is None]


def test_init_writes_every_key_with_its_default_and_comment():
    cfg = dataclasses.replace(Config(), runtime="sandbox", sandbox=SandboxConfig(state_dir="/tmp/s"))
    text = render(cfg)
    assert parse_config(text) == cfg  # every value written is the one in the Config
    lines = text.splitlines()
    for path, rule, _ in key_paths():
        start = f"{'  ' * path.count('.')}{path.rsplit('.', 1)[-1]}:"
        assert any(line.startswith(start) and line.endswith(f"  # {comment(rule)}") for line in lines), path


def test_comments_say_the_choices_and_digitaloceans_ranges():
    assert comment(key_for("runtime")) == "ssh (Docker over SSH on droplets) | sandbox (the local sandbox's hosts)"
    assert comment(key_for("registry.tier")) == "starter | basic | professional"
    assert comment(key_for("load_balancer.health_check.check_interval_seconds")) == "seconds between checks (3-300)"
    assert comment(key_for("service.port")) == "port the service listens on, on each droplet (host networking)"


def test_defaults_obey_their_own_rules():
    defaults = Config()
    for path, rule in ALL_KEYS:
        if path.startswith("sandbox."):  # no sandbox section by default; `sandbox up` fills it in
            continue
        value = _value_at(defaults, path)
        if not isinstance(value, (tuple, dict)) and value is not None and not dataclasses.is_dataclass(value):
            assert rule.problem(value) is None, path


@pytest.mark.parametrize("path", [p for p, r in ALL_KEYS if r.bounds])
def test_the_loader_enforces_each_range(path):
    bounds = key_for(path).bounds
    assert key_for(path).problem(bounds.lo) is None
    for bad in [bounds.lo - 1] + ([bounds.hi + 1] if bounds.hi is not None else []):
        with pytest.raises(ConfigError) as err:
            parse_config(_yaml_at(path, bad))
        [issue] = err.value.issues
        assert (issue.key, issue.found) == (path, str(bad))
        number = isinstance(_value_at(Config(), path), float)
        assert issue.expected == key_for(path).problem(float(bad) if number else bad)
        kind = "a number" if number else "an integer"
        assert issue.expected.startswith(kind + bounds.text())


@pytest.mark.parametrize("path", [p for p, r in ALL_KEYS if r.choices])
def test_the_loader_enforces_each_set_of_choices(path):
    rule = key_for(path)
    for name in rule.choice_names:
        assert rule.problem(name) is None
    wrong = rule.choice_names[0][:-1] + "x"
    with pytest.raises(ConfigError) as err:
        parse_config(_yaml_at(path, wrong))
    [issue] = err.value.issues
    assert issue.expected == "one of " + ", ".join(rule.choice_names)
    assert issue.hint == f"did you mean {rule.choice_names[0]!r}?"


@pytest.mark.parametrize("path", [p for p, r in ALL_KEYS if r.pattern])
def test_the_loader_enforces_each_pattern(path):
    with pytest.raises(ConfigError) as err:
        parse_config(_yaml_at(path, "''"))
    [issue] = err.value.issues
    assert (issue.key, issue.expected) == (path, key_for(path).pattern_text)


@pytest.mark.parametrize("path", [p for p in schema_paths() if len(p.rsplit(".", 1)[-1]) > 3])
def test_a_misspelt_key_suggests_the_right_one(path):
    section, _, name = path.rpartition(".")
    typo = name[:-2] + name[-1]  # one letter dropped
    with pytest.raises(ConfigError) as err:
        parse_config(_yaml_at(f"{section}.{typo}" if section else typo, 1))
    [issue] = err.value.issues
    assert issue.found == f"unknown key {typo!r}" and issue.hint == f"did you mean {name!r}?"


def test_setup_checks_the_registry_name_by_the_same_rule_as_the_loader():
    rule = key_for("registry.name")
    for name in ("zdd-registry", "a" * 63, "a", "shop-2", "Shop", "-x", "a" * 64, "a_b", ""):
        if rule.problem(name) is None:
            assert validate_registry_name(name) == name
        else:
            with pytest.raises(UsageError, match="registry name"):
                validate_registry_name(name)
