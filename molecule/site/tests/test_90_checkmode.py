"""site.yml passes in --check --diff mode on the whole stack and prints no secret."""

from checkmode import test_check_diff_passes_and_prints_no_secret  # noqa: F401
