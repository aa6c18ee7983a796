"""Adapters that let the console steer a trainer you already use.

    from lrconsole.integrations.lightning import LrConsoleCallback     # PyTorch Lightning
    from lrconsole.integrations.huggingface import LrConsoleCallback   # Hugging Face Trainer

Each submodule imports its library when you import it, never before: importing this package
needs neither Lightning nor transformers. Both drive the optimizer's LR through `lrconsole.Steer`,
so the session, its files and its control socket are the same as for any other run.
"""
