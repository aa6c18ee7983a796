"""Distributed runs: the lesson task or any Task under torchrun, steered from rank 0.

Rank 0 owns the session and the control socket and decides every step; before each
optimizer step it broadcasts (global step, LR) to the other ranks, so an LR change, a pause
or a stop reaches every rank at the same step. See `worker.py`.
"""
