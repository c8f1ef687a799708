"""The converge passes in --check --diff mode with Ansible's own strategy and prints no secret."""

from checkmode import test_check_diff_passes_and_prints_no_secret  # noqa: F401
