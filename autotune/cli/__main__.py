"""`python -m autotune.cli`: the same entry as the `autotune` script."""

from autotune.cli import main

main()
