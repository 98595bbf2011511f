"""Several Slurm clusters behind one service.

SLURM_CLUSTERS_FILE names a JSON file listing them; without it there is one cluster,
named SLURM_CLUSTER_NAME, configured by the SLURM_* variables. A task's optional
``cluster`` picks one (default: the first). ``Clusters`` behaves as the first
cluster's client, so code that has no cluster in mind keeps working.

    {"clusters": [
      {"name": "hpc", "base_url": "https://hpc-rest:6820", "api_version": "auto",
       "user_name": "slurm", "token_file": "/run/secrets/hpc-token"},
      {"name": "gpu", "base_url": "https://gpu-rest:6820", "jwt_key_file": "/run/secrets/gpu-key"}
    ]}

Per cluster: ``base_url`` (required), ``api_version``, ``user_name``, and one of
``token``/``token_file``/``jwt_key_base64``/``jwt_key_file``, as the SLURM_* variables,
and ``event_secret`` (SLURM_EVENT_SECRET: this cluster's slurmctld event secret(s)).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from ..config import secret_list
from ..errors import ConfigError, SlurmProxyError
from ..schemas.fields import SLURM_NAME as NAME


class UnknownCluster(SlurmProxyError):
    status = 404
    code = "unknown_cluster"

FIELDS = {"base_url": "SLURM_BASE_URL", "api_version": "SLURM_API_VERSION",
          "user_name": "SLURM_USER_NAME", "token": "SLURM_USER_TOKEN",
          "token_file": "SLURM_USER_TOKEN_FILE", "jwt_key_base64": "SLURM_JWT_HS256_KEY_BASE64",
          "jwt_key_file": "SLURM_JWT_HS256_KEY_FILE", "event_secret": "SLURM_EVENT_SECRET"}


class Clusters:
    def __init__(self, clients: Mapping[str, Any]):
        if not clients:
            raise ConfigError("No Slurm cluster configured.")
        self.clients = dict(clients)
        self.default = next(iter(self.clients))

    @property
    def names(self) -> list[str]:
        return list(self.clients)

    def get(self, name: str | None):
        """The client of cluster ``name`` (None: the default one)."""
        if name is None:
            return self.clients[self.default]
        try:
            return self.clients[name]
        except KeyError:
            raise UnknownCluster(f"No cluster {name!r:.80} here; known: {', '.join(self.clients)}.",
                                 errors={"cluster": [f"Unknown; known: {', '.join(self.clients)}."]}) from None

    def name_of(self, record_or_task: Mapping[str, Any]) -> str:
        task = record_or_task.get("task", record_or_task)
        return task.get("cluster") or self.default

    def __getattr__(self, attribute):
        # Anything else is the default cluster's (api_version, ping, submit, ...).
        return getattr(self.clients[self.default], attribute)


def cluster_configs(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each cluster's settings, as a config mapping of SLURM_* keys."""
    path = config.get("SLURM_CLUSTERS_FILE")
    if not path:
        return {config["SLURM_CLUSTER_NAME"]: dict(config)}
    try:
        with open(path, encoding="utf-8") as fh:
            entries = json.load(fh)["clusters"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"SLURM_CLUSTERS_FILE {path} is not a {{\"clusters\": [...]}} "
                          f"JSON file ({exc.__class__.__name__}).") from None
    out: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not name or not NAME.match(name) or name in out:
            raise ConfigError(f"SLURM_CLUSTERS_FILE: cluster {i} needs a unique name "
                              f"(letters, digits, '_', '.', '-').")
        unknown = set(entry) - set(FIELDS) - {"name"}
        if unknown or "base_url" not in entry:
            raise ConfigError(f"SLURM_CLUSTERS_FILE: cluster {name}: needs base_url"
                              + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
        settings = {**config, "SLURM_API_VERSION": "auto", "SLURM_USER_TOKEN": "",
                    "SLURM_USER_TOKEN_FILE": "", "SLURM_JWT_HS256_KEY_BASE64": "",
                    "SLURM_JWT_HS256_KEY_FILE": "", "SLURM_EVENT_SECRET": ()}
        settings.update({FIELDS[k]: v for k, v in entry.items() if k in FIELDS})
        try:    # a string of comma-separated secrets, or a list, parsed as the setting is
            settings["SLURM_EVENT_SECRET"] = secret_list(settings["SLURM_EVENT_SECRET"])
        except ValueError as exc:
            raise ConfigError(f"SLURM_CLUSTERS_FILE: cluster {name}: event_secret: {exc}") from None
        out[name] = settings
    return out
