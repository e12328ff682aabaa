"""``python -m mediabot``: the same as the ``mediabot`` command."""

from mediabot.cli import main

main()
