"""The Faust shell around the pure core: agents, the batch protocol, timers, recovery.

Nothing outside this package (and the tables it drives) imports Faust.
"""
