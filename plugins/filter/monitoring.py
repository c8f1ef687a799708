"""Filters that check the monitoring tier's vendor configuration files offline.

The Grafana, Loki and Alloy roles render their configuration with
``lookup('ansible.builtin.template', ...)`` and pass the text through these
filters before writing it, so a broken file fails the play on the control
node even where the vendor binaries are not installed. Each filter returns a
list of problems (empty when the file is fine).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.stackops.webstack.plugins.module_utils import monitoring_config


def _text(value, name):
    if not isinstance(value, (str, dict, list)):
        raise AnsibleFilterError(f"{name}: expected text, got {type(value).__name__}")
    return value


def alloy_config_errors(text):
    """Problems in an Alloy configuration."""
    return monitoring_config.alloy_config_errors(str(_text(text, "alloy_config_errors")))


def loki_config_errors(config):
    """Problems in a single-binary Loki configuration (text or mapping)."""
    return monitoring_config.loki_config_errors(_text(config, "loki_config_errors"))


def grafana_ini_errors(text):
    """Syntax problems in grafana.ini."""
    return monitoring_config.grafana_ini_errors(str(_text(text, "grafana_ini_errors")))


def grafana_datasource_errors(provisioning):
    """Problems in a data source provisioning file (text or mapping)."""
    return monitoring_config.grafana_datasource_errors(
        _text(provisioning, "grafana_datasource_errors")
    )


def grafana_dashboard_errors(text, datasource_uids):
    """Problems in a dashboard JSON, given the uids of the provisioned data sources."""
    return monitoring_config.grafana_dashboard_errors(
        _text(text, "grafana_dashboard_errors"), list(datasource_uids or [])
    )


class FilterModule:
    """Offline configuration checks of stackops.webstack's monitoring roles."""

    def filters(self):
        return {
            "alloy_config_errors": alloy_config_errors,
            "loki_config_errors": loki_config_errors,
            "grafana_ini_errors": grafana_ini_errors,
            "grafana_datasource_errors": grafana_datasource_errors,
            "grafana_dashboard_errors": grafana_dashboard_errors,
        }
