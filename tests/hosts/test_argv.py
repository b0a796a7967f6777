"""Command builders compared to the exact argv they must produce."""

import shlex

import pytest

from zdd_tui.hosts import argv as host_argv

REF = "registry.digitalocean.com/reg/app:sha-abc1234"


def test_pull_without_credentials():
    assert host_argv.docker_pull(REF, with_credentials_on_stdin=False) == ["docker", "pull", "--", REF]


def test_pull_with_credentials_keeps_them_off_the_command_line():
    argv = host_argv.docker_pull(REF, with_credentials_on_stdin=True)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["zdd-pull", REF]
    script = argv[2]
    # The config comes from stdin into a private temp dir that a trap removes on exit and hangup.
    assert 'cat > "$d/config.json"' in script
    assert "mktemp -d" in script and "umask 077" in script
    assert "trap 'rm -rf \"$d\"' EXIT" in script and "HUP" in script
    assert "DOCKER_CONFIG=\"$d\" docker pull -- \"$1\" &" in script


def test_run_argv_exact():
    argv = host_argv.docker_run(
        "app",
        REF,
        port=8080,
        admin_port=9090,
        version="sha-abc1234",
        env={"FOO": "bar baz", "ZDD_ADMIN_HOST": "0.0.0.0"},
        labels={"zdd.tag": "sha-abc1234", "zdd.app": "app"},
    )
    assert argv == [
        "docker", "run", "--detach", "--name", "app", "--network", "host", "--restart", "always",
        "--env", "FOO=bar baz",
        "--env", "ZDD_PORT=8080",
        "--env", "ZDD_ADMIN_PORT=9090",
        "--env", "ZDD_ADMIN_HOST=127.0.0.1",
        "--env", "ZDD_VERSION=sha-abc1234",
        "--label", "zdd.app=app",
        "--label", "zdd.tag=sha-abc1234",
        "--", REF,
    ]


def test_operator_env_cannot_expose_admin_port():
    argv = host_argv.docker_run("app", REF, port=1, admin_port=2, version="v", env={"ZDD_ADMIN_HOST": "0.0.0.0"})
    assert "ZDD_ADMIN_HOST=0.0.0.0" not in argv
    assert argv.count("ZDD_ADMIN_HOST=127.0.0.1") == 1


def test_stop_rm_inspect_logs():
    assert host_argv.docker_stop("app", 30) == ["docker", "stop", "-t", "30", "--", "app"]
    assert host_argv.docker_stop("app", 2.1) == ["docker", "stop", "-t", "3", "--", "app"]
    assert host_argv.docker_rm("app") == ["docker", "rm", "--", "app"]
    assert host_argv.docker_rm("app", force=True) == ["docker", "rm", "--force", "--", "app"]
    assert host_argv.docker_inspect("app") == ["docker", "container", "inspect", "--", "app"]
    logs = host_argv.docker_logs("app", 50)
    assert logs[0:2] == ["sh", "-c"] and logs[3:] == ["zdd-logs", "50", "app"]
    assert host_argv.docker_image_digests(REF) == [
        "docker", "image", "inspect", "--format", "{{json .RepoDigests}}", "--", REF]


def test_state_ops_take_values_as_parameters():
    for fn in (host_argv.state_read, host_argv.state_create, host_argv.state_write, host_argv.state_append,
               host_argv.state_remove):
        argv = fn("/var/lib/zdd/app", "lock")
        assert argv[0:2] == ["sh", "-c"]
        assert argv[4:] == ["/var/lib/zdd/app", "lock"]
        assert "/var/lib/zdd" not in argv[2] and "lock" not in argv[2].replace("$2", "")


@pytest.mark.parametrize("bad", ["../x", ".hidden", "a/b", "a b", "x;rm", "", "-rf"])
def test_state_names_are_validated(bad):
    with pytest.raises(ValueError):
        host_argv.state_read("/d", bad)


@pytest.mark.parametrize("bad", ["-v", "a b", "x;y", "$(id)", "a\nb", ""])
def test_refs_and_names_are_validated(bad):
    with pytest.raises(ValueError):
        host_argv.docker_pull(bad, with_credentials_on_stdin=False)
    with pytest.raises(ValueError):
        host_argv.docker_stop(bad, 1)


def test_tag_and_repo_parsing():
    assert host_argv.tag_of(REF) == "sha-abc1234"
    assert host_argv.tag_of("localhost:5000/a/b") == "latest"
    assert host_argv.repo_of("localhost:5000/a/b:v1") == "localhost:5000/a/b"
    assert host_argv.repo_of("localhost:5000/a/b@sha256:00") == "localhost:5000/a/b"


def test_command_line_is_shlex_join_and_round_trips():
    hostile = ["printf", "%s", "it's $(id); `x` \"q\"\nnew ünï"]
    line = host_argv.to_command_line(hostile)
    assert line == shlex.join(hostile)
    assert shlex.split(line) == hostile
