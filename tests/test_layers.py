"""Layer rules: the core never imports textual; reading sessions never imports torch."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import lrconsole.core


def modules_under(package: object) -> list[str]:
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    return [m.name for m in pkgutil.walk_packages(path, prefix)]


def imported_after(modules: list[str]) -> set[str]:
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_never_imports_textual() -> None:
    loaded = imported_after(modules_under(lrconsole.core))
    assert not any(name == "textual" or name.startswith("textual.") for name in loaded)


def test_schedule_and_manifest_stay_torch_free() -> None:
    light = [
        "lrconsole",
        "lrconsole.core.plan.schedule",
        "lrconsole.core.session.manifest",
        "lrconsole.core.plan.plan",
        "lrconsole.cli",
        "lrconsole.cli.info",
    ]
    assert "torch" not in imported_after(light)
