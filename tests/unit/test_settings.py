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
    handlers, level = root.handlers[:], root.level
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
