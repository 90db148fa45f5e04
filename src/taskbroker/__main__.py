"""``python -m taskbroker`` runs the CLI."""

from taskbroker.cli import main

main()
