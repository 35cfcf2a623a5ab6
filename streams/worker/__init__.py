"""The Faust shell around the pure core: agents, the batch protocol, timers, recovery.

Besides this package, only the tables it drives and the API's HTTP views import Faust.
"""
