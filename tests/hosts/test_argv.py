"""Command builders compared to the exact argv they must produce."""

import shlex

import pytest

from zdd_tui.hosts import argv as host_argv

REF = "registry.digitalocean.com/reg/app:sha-abc1234"


def test_pull_without_credentials_is_bounded():
    assert host_argv.docker_pull(REF, bound_seconds=299.5) == ["timeout", "-k", "5", "300", "docker", "pull",
                                                                "--", REF]


def test_pull_with_credentials_keeps_them_off_the_command_line():
    argv = host_argv.docker_pull(REF, bound_seconds=300, credentials_id="00ff00ff")
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["zdd-pull", REF, "300", "00ff00ff"]
    script = argv[2]
    # The config comes from stdin into a private directory on a tmpfs, removed on exit and hangup.
    assert 'cat > "$e/config.json"' in script and "umask 077" in script
    assert "for fs in /run /dev/shm" in script and "tmpfs|ramfs" in script and "/tmp" not in script
    assert "trap 'rm -rf -- \"$e\"' EXIT" in script and "HUP" in script
    assert 'timeout -k 5 "$bound" "$@" &' in script


def test_secret_entry_ids_and_bounds_are_checked():
    for bad in ("", "0123", "ABCDEF12", "0123abcd;x", "../0123abcd"):
        with pytest.raises(ValueError):
            host_argv.docker_pull(REF, bound_seconds=1, credentials_id=bad)
        with pytest.raises(ValueError):
            host_argv.secrets_remove(bad)
    with pytest.raises(ValueError):
        host_argv.docker_pull(REF, bound_seconds=0)
    assert host_argv.secrets_remove("0123abcd")[3:] == ["zdd-secrets-remove", "0123abcd"]


def test_run_argv_exact_and_without_environment_values():
    argv = host_argv.docker_run(
        "app",
        REF,
        port=8080,
        admin_port=9090,
        env_file_id="abcdef0123456789",
        bound_seconds=60,
        labels={"zdd.tag": "sha-abc1234", "zdd.app": "app"},
    )
    assert argv[:2] == ["sh", "-c"] and 'docker run --env-file "$e" "$@"' in argv[2]
    assert argv[3:] == [
        "zdd-run", "abcdef0123456789", "60",
        "--detach", "--name", "app", "--network", "host", "--restart", "always",
        "--env", "ZDD_PORT=8080",
        "--env", "ZDD_ADMIN_PORT=9090",
        "--env", "ZDD_ADMIN_HOST=127.0.0.1",
        "--label", "zdd.app=app",
        "--label", "zdd.tag=sha-abc1234",
        "--", REF,
    ]


def test_env_file_holds_the_values_and_the_operator_cannot_expose_the_admin_port():
    text = host_argv.env_file({"FOO": "bar baz", "URL": "x=y#z", "EMPTY": "", "ZDD_ADMIN_HOST": "0.0.0.0",
                               "ZDD_PORT": "1", "ZDD_VERSION": "sha-abc1234"})
    assert text == "FOO=bar baz\nURL=x=y#z\nEMPTY=\nZDD_VERSION=sha-abc1234\n"
    # --env on the command line wins over the file in docker: the fixed ones are not in the file.
    assert "ZDD_ADMIN_HOST" not in text and "ZDD_PORT" not in text


@pytest.mark.parametrize("value", ["a\nEVIL=1", "a\rb", "a\0b"])
def test_env_file_refuses_values_docker_would_split_and_never_shows_them(value):
    with pytest.raises(ValueError, match="environment variable FOO") as err:
        host_argv.env_file({"FOO": value})
    assert value not in str(err.value)
    with pytest.raises(ValueError, match="invalid environment variable name"):
        host_argv.env_file({"A B": "x"})


def test_stop_rm_inspect_logs():
    assert host_argv.docker_stop("app", 30) == ["docker", "stop", "-t", "30", "--", "app"]
    assert host_argv.docker_stop("app", 2.1) == ["docker", "stop", "-t", "3", "--", "app"]
    assert host_argv.docker_rm("app") == ["docker", "rm", "--", "app"]
    assert host_argv.docker_rm("app", force=True) == ["docker", "rm", "--force", "--", "app"]
    assert host_argv.docker_inspect("app") == ["docker", "container", "inspect", "--", "app"]
    logs = host_argv.docker_logs("app", 50)
    assert logs[0:2] == ["sh", "-c"] and logs[3:] == ["zdd-logs", "50", "app"]
    assert "--since" not in logs[2]
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
        host_argv.docker_pull(bad, bound_seconds=1)
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


def test_release_argv_exact_and_without_environment_values():
    argv = host_argv.docker_release(REF, ["python", "-m", "app", "migrate; rm -rf /"], env_file_id="abcdef0123456789",
                                    bound_seconds=600, labels={"zdd.release": "1", "zdd.app": "app"})
    assert argv[:2] == ["sh", "-c"]
    script = argv[2]
    # docker create reads the env file; it is removed before the command starts.
    assert script.index('docker create --env-file "$e" "$@"') < script.index('rm -f -- "$e"') \
        < script.index('docker start --attach "$c"')
    assert "(set -C; cat > \"$e\")" in script and "for fs in /run /dev/shm" in script and "/tmp" not in script
    assert argv[3:] == ["zdd-release", "abcdef0123456789", "600", "--rm", "--network", "host",
                        "--label", "zdd.app=app", "--label", "zdd.release=1",
                        "--", REF, "python", "-m", "app", "migrate; rm -rf /"]
    line = host_argv.to_command_line(argv)
    assert shlex.split(line) == argv  # each argument stays one argument, whatever it holds
    for bad in ([], [""], ["a\0b"]):
        with pytest.raises(ValueError):
            host_argv.docker_release(REF, bad, env_file_id="abcdef0123456789", bound_seconds=1)


def test_run_and_release_take_secrets_only_through_the_env_file():
    from zdd_tui.app_secrets import secret_env

    value = "s3cr3t-value-for-argv"
    bundle = secret_env(b"k" * 32, {"DB_PASSWORD": value})
    run = host_argv.docker_run("app", REF, port=8080, admin_port=9090, env_file_id="abcdef0123456789",
                               bound_seconds=60, labels={"zdd.secrets": bundle.label})
    release = host_argv.docker_release(REF, ["migrate"], env_file_id="abcdef0123456789", bound_seconds=60,
                                       labels={"zdd.secrets": bundle.label})
    for argv in (run, release):
        assert value not in host_argv.to_command_line(argv)
    assert "DB_PASSWORD=" in bundle.label and host_argv.env_file(dict(bundle.values)) == f"DB_PASSWORD={value}\n"


def test_logs_since_is_docker_s_seconds_and_nanoseconds():
    logs = host_argv.docker_logs("app", 50, since=1_767_366_245.5)
    assert logs[0:2] == ["sh", "-c"] and logs[3:] == ["zdd-logs", "50", "app", "1767366245.500000000"]
    assert '--since "$3"' in logs[2] and "1767366245" not in logs[2]  # a parameter, never in the script
    # Docker reads the digits after the point as nanoseconds: always nine of them.
    assert host_argv.docker_since(1_767_366_245.000001) == "1767366245.000001000"
    assert host_argv.docker_since(0) == "0.000000000"
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="since must be non-negative epoch seconds"):
            host_argv.docker_logs("app", 50, since=bad)
