"""The credential heuristic on zdd.yaml values, service.env above all (it reaches every host)."""

from __future__ import annotations

import pytest

from zdd_tui.config import ConfigError, parse_config
from zdd_tui.secret_values import secret_kind

HEX32 = "0123456789abcdef" * 2

REFUSED = {
    "postgres://app:hunter2@db/app": "URL with a password",
    "mysql://root:p4ss@10.0.0.5:3306/shop": "URL with a password",
    "redis://:s3cret@cache:6379/0": "URL with a password",
    "amqp://guest:guest@rabbit//": "URL with a password",
    "https://user:tok@git.example.com/org/repo.git": "URL with a password",
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc": "Stripe",
    "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc": "Stripe",
    "rk_live_" + "51H8sMZKx9Q2mPn4": "Stripe",
    "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": "webhook",
    "ghp_" + "a" * 36: "GitHub token",
    "github_pat_" + "11ABCDEFG0" * 3: "GitHub fine-grained",
    "xoxb-" + "123456789012-1234567890123-abcdefghijkl": "Slack token",
    "xoxp-" + "1234567890-abc": "Slack token",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX": "Slack webhook",
    "AKIA" + "IOSFODNN7EXAMPLE": "AWS access key",
    "glpat-" + "xxxxxxxxxxxxxxxxxxxx": "GitLab",
    "dop_v1_" + "ab" * 32: "DigitalOcean",
    f"https://{HEX32}@o123456.ingest.sentry.io/4504": "Sentry DSN",
    f"https://{HEX32}@o1.ingest.us.sentry.io/12": "Sentry DSN",
    f"https://{HEX32}:{HEX32}@sentry.example.com/7": "Sentry DSN",
    "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY": "Google API key",
    "sk-proj-" + "abcdEFGH1234ijklMNOP5678": "API secret key",
    "npm_" + "a1B2" * 9: "npm",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U": "JSON Web Token",
}

ACCEPTED = [
    "postgres://db/app",
    "postgres://app@db/app",  # a user, no password
    "redis://cache:6379/0",
    "https://example.com/path?x=1#frag",
    "https://example.com:8443/a@b",
    "http://[::1]:8080/health",
    "ssh://git@github.com/org/repo.git",
    "admin@example.com",
    "info",
    "a b",
    "production",
    "sk_live",  # the prefix alone
    "mask_test_value",
    "task-runner-worker-queue-name",
    "LOCALE=sk-SK",
    "true",
    "8080",
    "sha-abc1234",
    "0.0.0.0",
    "https://o123.ingest.sentry.io/4504",  # no key in it
    "",
]


@pytest.mark.parametrize("value,kind", REFUSED.items())
def test_credentials_are_recognised(value, kind):
    found = secret_kind(value)
    assert found is not None and kind in found
    assert value not in found


@pytest.mark.parametrize("value", ACCEPTED)
def test_ordinary_values_pass(value):
    assert secret_kind(value) is None


@pytest.mark.parametrize("value", ["postgres://app:hunter2@db/app", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
                                   f"https://{HEX32}@o123456.ingest.sentry.io/4504"])
def test_service_env_refuses_them_naming_the_key_and_where_they_belong(value):
    with pytest.raises(ConfigError) as err:
        parse_config(f"app: web\nservice:\n  env:\n    LOG_LEVEL: info\n    DATABASE_URL: '{value}'\n")
    text = str(err.value) + str(err.value.hint or "")
    assert "service.env.DATABASE_URL" in text
    assert "keep them out of" in text
    assert value not in text and "hunter2" not in text
    assert "LOG_LEVEL" not in text


def test_service_env_with_ordinary_values_loads():
    cfg = parse_config("app: web\nservice:\n  env:\n    DATABASE_URL: postgres://db/app\n    LOG_LEVEL: info\n")
    assert cfg.service.env == {"DATABASE_URL": "postgres://db/app", "LOG_LEVEL": "info"}


def test_an_env_key_named_like_a_secret_points_at_application_secrets():
    with pytest.raises(ConfigError) as err:
        parse_config("app: web\nservice:\n  env:\n    DB_PASSWORD: x\n")
    assert "service.env.DB_PASSWORD" in str(err.value) and "keep them out of" in str(err.value)
