"""Layer rules: the core never imports textual; reading sessions never imports torch."""

from __future__ import annotations

import ast
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import lrconsole.core

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lrconsole"


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


# Attributes of another object that start with `_` but are the language's or a library's
# public surface: module functions such as `os._exit`, and namedtuple methods.
PUBLIC_UNDERSCORE = {"_exit", "_asdict", "_replace", "_fields", "_make"}


def private_reaches(path: Path) -> list[str]:
    """`x._name` in `path` where x is not self or cls: a reach into another object."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in PUBLIC_UNDERSCORE:
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{name}")
    return found


def test_no_module_reaches_into_another_objects_private_members() -> None:
    """Only an object's own methods touch its `_` members (Engine's, Trainer's, all): steer,
    the runner and dist go through the public API."""
    reaches = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in private_reaches(path)]
    assert reaches == []


def test_engine_private_members_are_touched_only_in_engine_py() -> None:
    engine_py = PACKAGE / "core" / "train" / "engine.py"
    private = set(re.findall(r"self\.(_[a-z]\w*)", engine_py.read_text(encoding="utf-8")))
    assert "_controls" in private  # the scan finds what it looks for
    pattern = re.compile(r"(?<!self)\.(" + "|".join(sorted(private)) + r")\b")
    outside = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted(ROOT.glob("*/**/*.py"))
        if path != engine_py and ".venv" not in path.parts
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert outside == []


def test_import_contracts_hold() -> None:
    """The import-linter contracts in pyproject.toml (layers, forbidden imports)."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    out = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "0 broken" in out.stdout


def test_no_module_is_long() -> None:
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    long = sorted(str(p.relative_to(ROOT)) for p, n in sizes.items() if n > 360)
    assert long == []
