"""`python -m orderflow.streams` is the `orderflow` command."""
from .cli import main

main()
