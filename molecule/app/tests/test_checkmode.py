"""converge.yml passes in --check --diff mode and prints no secret (the app token included)."""

from checkmode import test_check_diff_passes_and_prints_no_secret  # noqa: F401
