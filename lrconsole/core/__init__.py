"""The headless core: schedules, sessions, tasks and the segment engine.

Importing this package stays light (no torch, no textual): torch is imported by the
modules that train (engine, tasks, checkpoints), never by the schedule or manifest code.
"""
