"""After the checks: no generated secret in a host's journal, /var/log, ps, or the run's output."""

from secretsearch import test_no_secret_in_logs_processes_or_output  # noqa: F401
