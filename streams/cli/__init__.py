"""The `orderflow` command line: its commands, the demo board, the simulator and sample traffic, stats."""
