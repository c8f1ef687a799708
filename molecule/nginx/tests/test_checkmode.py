"""converge.yml passes in --check --diff mode and prints no secret (lb2's TLS key included)."""

from checkmode import test_check_diff_passes_and_prints_no_secret  # noqa: F401
