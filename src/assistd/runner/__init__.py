"""Durable run execution: workers claim runs from the runs table under a lease, call the model and
tools, record steps, and publish events. See ``pool`` (claiming, leases) and ``execute`` (one run)."""
