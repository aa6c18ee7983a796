"""The runner: one process per session that trains it and serves its control socket.

`launch` (no torch) starts one; `host` (torch) is what runs inside it.
"""
