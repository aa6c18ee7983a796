"""Adapters that let the console steer a trainer you already use.

    from lrconsole.integrations.lightning import LrConsoleCallback     # PyTorch Lightning
    from lrconsole.integrations.huggingface import LrConsoleCallback   # Hugging Face Trainer

Each submodule imports its library when you import it, never before: importing this package
needs neither Lightning nor transformers. Both drive the optimizer's LR through `lrconsole.Steer`,
so the session, its files and its control socket are the same as for any other run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def metric_map(metrics: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """Session metric name -> the trainer's name for it."""
    if isinstance(metrics, Mapping):
        return {str(k): str(v) for k, v in metrics.items()}
    if isinstance(metrics, str):
        return {metrics: metrics}
    return {name: name for name in metrics}
