"""`python -m controller` is `wfctl`."""

from controller.cli import main

main()
