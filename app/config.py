"""Configuration: defaults, then the environment, then ``test_config``; then checked.

Every key the service reads is declared here once, with its type and default, and
listed with a comment in ``.env.example``. Numbers from the environment become
numbers here, not strings somewhere later.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import ConfigError
from .schemas.fields import SLURM_NAME as _NAME


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names_to_urls(value: Any) -> dict[str, str]:
    """A JSON object of short names to URLs (whose secrets stay in configuration)."""
    if isinstance(value, dict):
        data = value
    else:
        try:
            data = json.loads(value) if str(value).strip() else {}
        except ValueError:
            raise ValueError("not a JSON object") from None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and _NAME.match(k) and isinstance(v, str) and "://" in v
            for k, v in data.items()):
        raise ValueError('not a JSON object of names ([A-Za-z0-9_.-], up to 64) to URLs')
    return dict(data)




# -- comma-separated settings, parsed once into typed values ------------------------
# Each parser takes the setting's text ("a, b,c") or an already parsed value (a test's
# override, a cluster file's list), and raises ValueError naming the bad entry.

def _entries(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return [str(item).strip() for item in items if str(item).strip()]


def name_list(value: Any) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``, in order (path prefixes)."""
    return tuple(_entries(value))


name_list.is_list = True


def name_set(value: Any) -> frozenset[str]:
    """``"Example.org, #Jobs"`` -> ``{"example.org", "#jobs"}`` (matched case-blind)."""
    return frozenset(entry.lower() for entry in _entries(value))


name_set.is_list = True


def network_list(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"10.0.0.0/8, ::1"`` -> IP networks."""
    out = []
    for entry in _entries(value):
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not a network (e.g. 10.0.0.0/8)") from None
    return tuple(out)


network_list.is_list = True


def secret_list(value: Any) -> tuple[str, ...]:
    """Several secrets (the new one and the one being rotated out), each at least 16
    characters. An error never shows a secret."""
    out = name_list(value)
    for i, secret in enumerate(out, 1):
        if len(secret) < 16:
            raise ValueError(f"secret {i} of {len(out)} is shorter than 16 characters "
                             f"(each secret must be at least 16 characters)")
    return out


secret_list.is_list = True


def role_set(value: Any) -> frozenset[str]:
    """Roles a single sign-on user gets: any of the key roles but ``admin``."""
    from .auth import ROLES

    out = name_set(value)
    for role in sorted(out):
        if role not in ROLES or role == "admin":
            raise ValueError(f"{role!r} is not a role a signed-in user may get "
                             f"(use {', '.join(r for r in ROLES if r != 'admin')})")
    return out


role_set.is_list = True


@dataclass(frozen=True)
class Setting:
    default: Any
    kind: Callable[[Any], Any] = str
    secret: bool = False          # never echo the value in an error


def is_list(setting: Setting) -> bool:
    """A comma-separated setting (its errors name the bad entry, not the whole text)."""
    return getattr(setting.kind, "is_list", False)


SETTINGS: dict[str, Setting] = {
    # slurmrestd
    "SLURM_BASE_URL": Setting("http://127.0.0.1:6820"),
    "SLURM_CLUSTER_NAME": Setting("default"),
    "SLURM_CLUSTERS_FILE": Setting(""),
    "SLURM_API_VERSION": Setting("auto"),
    "SLURM_USER_NAME": Setting("slurm"),
    "SLURM_USER_TOKEN": Setting(""),
    "SLURM_USER_TOKEN_FILE": Setting(""),
    "SLURM_JWT_HS256_KEY_BASE64": Setting(""),
    "SLURM_JWT_HS256_KEY_FILE": Setting(""),
    "SLURM_JWT_LIFESPAN": Setting(600, int),
    "SLURM_CONNECT_TIMEOUT": Setting(3.05, float),
    "SLURM_READ_TIMEOUT": Setting(30.0, float),
    # the poller
    "SLURM_POLL_INTERVAL": Setting(10.0, float),
    "SLURM_POLL_LOST_AFTER": Setting(600.0, float),
    "SLURM_SLURMDB": Setting(False, _bool),
    "SLURM_POLL_INTERVAL_WITH_EVENTS": Setting(60.0, float),
    # events from slurmctld (POST /events/slurm/jobcomp)
    "SLURM_EVENT_SECRET": Setting((), secret_list, secret=True),
    # MongoDB
    "MONGODB_URI": Setting(""),
    "MONGODB_DB": Setting("slurm_proxy"),
    "MONGODB_COLLECTION": Setting("tasks"),
    "MONGODB_TIMEOUT_MS": Setting(5000, int),
    # the service itself
    "SLURM_PROXY_HOST": Setting("127.0.0.1"),
    "SLURM_PROXY_PORT": Setting(5001, int),
    "SLURM_PROXY_MAX_BODY_BYTES": Setting(1_048_576, int),
    "SLURM_PROXY_LOG_LEVEL": Setting("INFO"),
    "SLURM_PROXY_LOG_FORMAT": Setting("text"),
    # prometheus_client also reads it from the environment itself (app/metrics.py)
    "PROMETHEUS_MULTIPROC_DIR": Setting(""),
    # run.py (development server) only
    "SLURM_PROXY_DEV_POLLER": Setting(True, _bool),
    "FLASK_DEBUG": Setting(False, _bool),
    # who may do what
    "SLURM_PROXY_AUTH": Setting(True, _bool),
    "SLURM_PROXY_API_KEYS_FILE": Setting("api-keys.json"),
    "SLURM_PROXY_PUBLIC_DOCS": Setting(False, _bool),
    "SLURM_PROXY_RATE_LIMIT": Setting("20/second;600/minute"),
    "SLURM_PROXY_RATE_LIMIT_STORAGE": Setting(""),
    "SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT": Setting("5/second;60/minute"),
    "SLURM_PROXY_TRUSTED_PROXIES": Setting(0, int),
    "SLURM_PROXY_ALLOWED_PATH_PREFIXES": Setting((), name_list),
    "SLURM_PROXY_DENIED_USERS": Setting(frozenset({"root"}), name_set),
    "SLURM_PROXY_MAX_WAIT": Setting(60, int),
    "SLURM_PROXY_STREAM_MAX_SECONDS": Setting(3600.0, float),
    "SLURM_PROXY_WATCH_INTERVAL": Setting(0.5, float),
    "SLURM_PROXY_OUTPUT_PREFIXES": Setting((), name_list),
    "SLURM_PROXY_CLUSTER_CACHE_SECONDS": Setting(5.0, float),
    # the web page (/ui/)
    "SLURM_PROXY_SECRET_KEY": Setting(""),
    "SLURM_PROXY_UI_SESSION_HOURS": Setting(8.0, float),
    "SLURM_PROXY_SECURE_COOKIES": Setting(False, _bool),
    "SLURM_PROXY_UI_USER_HEADER": Setting(""),
    "SLURM_PROXY_UI_TRUSTED_PROXIES": Setting((), network_list),
    "SLURM_PROXY_UI_PROXY_ROLES": Setting(frozenset({"submit", "read", "cancel"}), role_set),
    # notifications: delivery
    "NOTIFICATIONS_TIMEOUT": Setting(10.0, float),
    "NOTIFICATIONS_MAX_ATTEMPTS": Setting(8, int),
    "NOTIFICATIONS_BACKOFF_SECONDS": Setting(5.0, float),
    "NOTIFICATIONS_BACKOFF_MAX_SECONDS": Setting(3600.0, float),
    "NOTIFICATIONS_LEASE_SECONDS": Setting(120.0, float),
    "NOTIFICATIONS_CONCURRENCY": Setting(16, int),
    "NOTIFICATIONS_PER_PEER": Setting(4, int),
    # email (SMTP)
    "NOTIFICATIONS_SMTP_HOST": Setting(""),
    "NOTIFICATIONS_SMTP_PORT": Setting(587, int),
    "NOTIFICATIONS_SMTP_SECURITY": Setting("starttls"),
    "NOTIFICATIONS_SMTP_USERNAME": Setting(""),
    "NOTIFICATIONS_SMTP_PASSWORD": Setting(""),
    "NOTIFICATIONS_SMTP_FROM": Setting("slurm-proxy@localhost"),
    "NOTIFICATIONS_SMTP_ALLOWED_DOMAINS": Setting(frozenset(), name_set),
    # Gmail API
    "NOTIFICATIONS_GMAIL_CREDENTIALS_FILE": Setting(""),
    "NOTIFICATIONS_GMAIL_SENDER": Setting(""),
    # Slack
    "NOTIFICATIONS_SLACK_TOKEN": Setting(""),
    "NOTIFICATIONS_SLACK_WEBHOOK_URL": Setting(""),
    "NOTIFICATIONS_SLACK_DEFAULT_CHANNEL": Setting(""),
    "NOTIFICATIONS_SLACK_API_URL": Setting("https://slack.com/api/"),
    "NOTIFICATIONS_SLACK_ALLOWED_CHANNELS": Setting(frozenset(), name_set),
    # RabbitMQ
    "NOTIFICATIONS_RABBITMQ_URL": Setting(""),
    "NOTIFICATIONS_RABBITMQ_EXCHANGE": Setting("slurm-proxy"),
    "NOTIFICATIONS_RABBITMQ_EXCHANGE_TYPE": Setting("topic"),
    "NOTIFICATIONS_RABBITMQ_QUEUE": Setting("slurm-proxy.notifications"),
    "NOTIFICATIONS_RABBITMQ_BINDING_KEY": Setting("#"),
    "NOTIFICATIONS_RABBITMQ_ROUTING_KEY": Setting("slurm-proxy.task"),
    # webhooks
    "NOTIFICATIONS_WEBHOOK_SECRET": Setting(""),
    "NOTIFICATIONS_WEBHOOK_ALLOW_HTTP": Setting(False, _bool),
    "NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS": Setting((), network_list),
    # apprise: {"name": "scheme://..."}; tasks name targets, the URLs stay here
    "NOTIFICATIONS_APPRISE_TARGETS": Setting({}, _names_to_urls, secret=True),
}

CHOICES = {"NOTIFICATIONS_SMTP_SECURITY": ("starttls", "ssl", "none"),
           "SLURM_PROXY_LOG_FORMAT": ("text", "json"),
           "NOTIFICATIONS_RABBITMQ_EXCHANGE_TYPE": ("topic", "direct", "fanout", "headers")}


def load_config(environ: Mapping[str, str] | None = None,
                test_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the configuration; raise ConfigError naming every bad key."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {key: s.default for key, s in SETTINGS.items()}
    problems: list[str] = []
    for key, setting in SETTINGS.items():
        if key in environ:
            try:
                config[key] = setting.kind(environ[key])
            except ValueError as exc:
                problems.append(f"{key}: {exc}" if setting.secret or is_list(setting) else
                                f"{key}={environ[key]!r} is not a valid {setting.kind.__name__}")
    config.update(test_config or {})
    for key, value in (test_config or {}).items():
        # An override given as text (tests, cluster files) is parsed like the environment's.
        if key in SETTINGS and is_list(SETTINGS[key]):
            try:
                config[key] = SETTINGS[key].kind(value)
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
    for key, allowed in CHOICES.items():
        if config[key] not in allowed:
            problems.append(f"{key}={config[key]!r} must be one of {', '.join(allowed)}")
    if config["NOTIFICATIONS_SMTP_HOST"] and "@" not in config["NOTIFICATIONS_SMTP_FROM"]:
        problems.append("NOTIFICATIONS_SMTP_FROM must be an email address")
    if not config["SLURM_PROXY_AUTH"] and not is_loopback(config["SLURM_PROXY_HOST"]):
        problems.append("SLURM_PROXY_AUTH=0 (no authentication) is only allowed with "
                        "SLURM_PROXY_HOST on loopback (127.0.0.1, ::1 or localhost)")
    for key in ("SLURM_PROXY_RATE_LIMIT", "SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT"):
        if config[key].strip():
            from limits import parse_many
            try:
                parse_many(config[key])
            except ValueError:
                problems.append(f"{key}={config[key]!r} is not a rate limit (e.g. 5/second;60/minute)")
    if config["SLURM_PROXY_TRUSTED_PROXIES"] < 0:
        problems.append("SLURM_PROXY_TRUSTED_PROXIES must be 0 or more")
    if config["SLURM_PROXY_UI_USER_HEADER"] and not config["SLURM_PROXY_UI_TRUSTED_PROXIES"]:
        problems.append("SLURM_PROXY_UI_USER_HEADER needs SLURM_PROXY_UI_TRUSTED_PROXIES (the "
                        "proxy addresses the header is believed from)")
    if config["SLURM_PROXY_WATCH_INTERVAL"] < 0.1:
        problems.append("SLURM_PROXY_WATCH_INTERVAL must be at least 0.1 (seconds)")
    if config["SLURM_POLL_INTERVAL"] <= 0:
        problems.append("SLURM_POLL_INTERVAL must be positive")
    if config["SLURM_POLL_INTERVAL_WITH_EVENTS"] < config["SLURM_POLL_INTERVAL"]:
        problems.append("SLURM_POLL_INTERVAL_WITH_EVENTS must be at least SLURM_POLL_INTERVAL")
    if config["NOTIFICATIONS_CONCURRENCY"] < 1 or config["NOTIFICATIONS_PER_PEER"] < 1:
        problems.append("NOTIFICATIONS_CONCURRENCY and NOTIFICATIONS_PER_PEER must be at least 1")
    if problems:
        raise ConfigError("Invalid configuration: " + "; ".join(problems))
    return config


@dataclass(frozen=True)
class SlurmAuth:
    """How the service proves itself to slurmrestd; see app/slurm/transport.py."""

    mode: str                 # "token" or "key"
    user_name: str            # the service's own identity for read-only calls
    token: str = ""
    token_file: str = ""
    key: bytes = b""
    lifespan: int = 600

    def __repr__(self) -> str:  # never print the secret
        return f"SlurmAuth(mode={self.mode!r}, user_name={self.user_name!r})"


def slurm_auth_from_config(config: Mapping[str, Any]) -> SlurmAuth:
    """Pick the auth mode; exactly one of a token or an HS256 key must be configured."""
    token = config.get("SLURM_USER_TOKEN") or ""
    token_file = config.get("SLURM_USER_TOKEN_FILE") or ""
    key_b64 = config.get("SLURM_JWT_HS256_KEY_BASE64") or ""
    key_file = config.get("SLURM_JWT_HS256_KEY_FILE") or ""
    user = config.get("SLURM_USER_NAME") or "slurm"
    has_token = bool(token or token_file)
    has_key = bool(key_b64 or key_file)
    if has_token and has_key:
        raise ConfigError("Configure either SLURM_USER_TOKEN[_FILE] or "
                          "SLURM_JWT_HS256_KEY_BASE64/_FILE, not both.")
    if has_token:
        if token_file and not os.access(token_file, os.R_OK):
            raise ConfigError(f"SLURM_USER_TOKEN_FILE {token_file} is not readable.")
        return SlurmAuth("token", user, token=token, token_file=token_file)
    if has_key:
        try:
            if key_b64:
                key = base64.b64decode(key_b64, validate=True)
            else:
                with open(key_file, "rb") as fh:
                    key = fh.read()
        except (OSError, ValueError) as exc:
            which = "SLURM_JWT_HS256_KEY_BASE64" if key_b64 else "SLURM_JWT_HS256_KEY_FILE"
            raise ConfigError(f"{which} could not be read: {exc.__class__.__name__}") from None
        if len(key) < 16:
            raise ConfigError("The HS256 key is shorter than 16 bytes.")
        return SlurmAuth("key", user, key=key, lifespan=int(config["SLURM_JWT_LIFESPAN"]))
    raise ConfigError(
        "No slurmrestd credentials: set SLURM_USER_NAME with SLURM_USER_TOKEN or "
        "SLURM_USER_TOKEN_FILE, or set SLURM_JWT_HS256_KEY_BASE64 or SLURM_JWT_HS256_KEY_FILE.")
