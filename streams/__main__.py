"""`python -m orderflow.streams` is the `orderflow` command."""
from orderflow.streams.cli.commands import main

main()
