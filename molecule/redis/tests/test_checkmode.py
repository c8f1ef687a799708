"""converge.yml passes in --check --diff mode and prints none of the Redis passwords."""

from checkmode import test_check_diff_passes_and_prints_no_secret  # noqa: F401
