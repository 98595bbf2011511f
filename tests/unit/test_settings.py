"""The environment is read by config.py only: the log format and level, the metrics
directory and the development server's switches are settings like any other."""
from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

from app.cli import main as cli_main
from app.config import load_config
from app.errors import ConfigError
from app.logs import gunicorn_logconfig, setup_logging


def test_log_format_and_level_come_from_the_settings(capsys):
    root = logging.getLogger()
    handlers, level, srcfile = root.handlers[:], root.level, logging._srcfile
    try:
        setup_logging(load_config({"SLURM_PROXY_LOG_FORMAT": "json",
                                   "SLURM_PROXY_LOG_LEVEL": "warning"}, {}))
        logging.getLogger("t").info("not shown")
        logging.getLogger("t").warning("state task_uuid=123e4567-e89b-12d3-a456-426614174000 "
                                       "slurm_job_id=7 PENDING -> RUNNING")
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging._srcfile = srcfile
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["task_uuid"] == "123e4567-e89b-12d3-a456-426614174000" and line["slurm_job_id"] == 7
    assert "main" in gunicorn_logconfig(load_config({"SLURM_PROXY_LOG_FORMAT": "json"}, {}))["formatters"]


def test_a_bad_log_format_stops_start_up_naming_the_setting():
    with pytest.raises(ConfigError, match="SLURM_PROXY_LOG_FORMAT='yaml' must be one of text, json"):
        load_config({"SLURM_PROXY_LOG_FORMAT": "yaml"}, {})


def test_dev_server_switches_are_settings():
    config = load_config({"SLURM_PROXY_DEV_POLLER": "0", "FLASK_DEBUG": "1"}, {})
    assert config["SLURM_PROXY_DEV_POLLER"] is False and config["FLASK_DEBUG"] is True


def test_cli_reads_its_own_settings_file_named_by_option_or_variable(tmp_path, httpserver):
    httpserver.expect_request("/cluster").respond_with_json(
        {"cluster": "c1", "partitions": [], "api_version": "0.0.38", "generated_at": "x"})
    settings = tmp_path / "cli.json"
    settings.write_text(json.dumps({"url": httpserver.url_for("/"), "key": "sp_x"}))
    runner = CliRunner()
    by_variable = runner.invoke(cli_main, ["--json", "cluster"],
                                env={"SLURM_PROXY_CONFIG": str(settings)})
    by_option = runner.invoke(cli_main, ["--config", str(settings), "--json", "cluster"])
    for result in (by_variable, by_option):
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["cluster"] == "c1"
    assert httpserver.log[0][0].headers["Authorization"] == "Bearer sp_x"


@pytest.mark.parametrize("setting, text, says", [
    ("SLURM_PROXY_UI_TRUSTED_PROXIES", "10.0.0.0/8, proxy.example.org",
     "SLURM_PROXY_UI_TRUSTED_PROXIES: 'proxy.example.org' is not a network"),
    ("NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS", "10.1.2.0/24,10.1.2.300/32",
     "NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS: '10.1.2.300/32' is not a network"),
    ("SLURM_PROXY_UI_PROXY_ROLES", "read,superuser", "SLURM_PROXY_UI_PROXY_ROLES: 'superuser' is not a role"),
    ("SLURM_PROXY_UI_PROXY_ROLES", "read,admin", "SLURM_PROXY_UI_PROXY_ROLES: 'admin' is not a role"),
])
def test_a_bad_list_entry_stops_start_up_naming_setting_and_entry(setting, text, says):
    for environ, override in (({setting: text}, {}), ({}, {setting: text})):
        with pytest.raises(ConfigError) as exc:
            load_config(environ, override)
        assert says in str(exc.value)


def test_a_short_event_secret_is_refused_without_showing_it():
    with pytest.raises(ConfigError) as exc:
        load_config({"SLURM_EVENT_SECRET": "a-long-enough-secret-0123, Zq9short"}, {})
    message = str(exc.value)
    assert "SLURM_EVENT_SECRET: secret 2 of 2 is shorter than 16 characters" in message
    assert "Zq9short" not in message and "a-long-enough" not in message


def test_lists_are_parsed_once_into_typed_values():
    import ipaddress

    config = load_config({"SLURM_PROXY_UI_TRUSTED_PROXIES": " 10.0.0.5 ,, ::1/128 ",
                          "NOTIFICATIONS_SMTP_ALLOWED_DOMAINS": "Example.ORG, lab.example.org",
                          "SLURM_PROXY_OUTPUT_PREFIXES": "/home/{username}, /scratch",
                          "SLURM_EVENT_SECRET": "old-secret-being-rotated,new-secret-0123456789"}, {})
    assert config["SLURM_PROXY_UI_TRUSTED_PROXIES"] == (ipaddress.ip_network("10.0.0.5/32"),
                                                        ipaddress.ip_network("::1/128"))
    assert config["NOTIFICATIONS_SMTP_ALLOWED_DOMAINS"] == {"example.org", "lab.example.org"}
    assert config["SLURM_PROXY_OUTPUT_PREFIXES"] == ("/home/{username}", "/scratch")
    assert config["SLURM_EVENT_SECRET"] == ("old-secret-being-rotated", "new-secret-0123456789")
    assert config["SLURM_PROXY_DENIED_USERS"] == {"root"}
    assert config["SLURM_PROXY_UI_PROXY_ROLES"] == {"submit", "read", "cancel"}
    assert load_config({}, config) == config            # a parsed config loads as itself


def test_a_cluster_files_event_secrets_may_be_a_list_and_are_checked(tmp_path):
    from app.slurm.clusters import cluster_configs

    path = tmp_path / "clusters.json"
    path.write_text(json.dumps({"clusters": [
        {"name": "a", "base_url": "http://a", "event_secret": ["first-secret-0123456", "second-secret-012345"]},
        {"name": "b", "base_url": "http://b", "event_secret": "one-secret-0123456789"}]}))
    config = load_config({}, {"SLURM_CLUSTERS_FILE": str(path)})
    clusters = cluster_configs(config)
    assert clusters["a"]["SLURM_EVENT_SECRET"] == ("first-secret-0123456", "second-secret-012345")
    assert clusters["b"]["SLURM_EVENT_SECRET"] == ("one-secret-0123456789",)
    path.write_text(json.dumps({"clusters": [{"name": "a", "base_url": "http://a",
                                              "event_secret": "tiny"}]}))
    with pytest.raises(ConfigError) as exc:
        cluster_configs(config)
    assert "cluster a: event_secret: secret 1 of 1 is shorter" in str(exc.value)
    assert "tiny" not in str(exc.value)
