"""Imports run one way: core ``goose_neuro`` <- ``goose_neuro.export`` <- ``goose_neuro.energy`` <-
``goose_neuro.cli``; ``goose_neuro.hardware_profiles`` is a leaf that any layer may read (and that
itself reads nothing of the package but ``goose_neuro.errors``).

Every module of the installed package is parsed with ``ast`` (nothing is imported), and every
import in it counts: module level, inside functions, under ``TYPE_CHECKING``, and
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RANK = {"core": 0, "export": 1, "energy": 2, "cli": 3}
SUBPACKAGES = {"goose_neuro.cli": "cli", "goose_neuro.export": "export", "goose_neuro.energy": "energy",
               "goose_neuro.hardware_profiles": "hardware_profiles"}
LEAF_MAY_IMPORT = ("goose_neuro.errors",)

# Known back-imports that are tolerated for now, as (importer, imported) pairs: none.
ALLOWED: set[tuple[str, str]] = set()


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name, or None outside the package."""
    if module != "goose_neuro" and not module.startswith("goose_neuro."):
        return None
    for pkg, layer in SUBPACKAGES.items():
        if module == pkg or module.startswith(pkg + "."):
            return layer
    return "core"


def installed_roots() -> dict[str, Path]:
    """Directory of each top-level package of the installation (the build maps export/, energy/ and
    hardware_profiles/ into the goose_neuro namespace, so they are not under goose_neuro/)."""
    declared = re.search(r'^packages = \[(.*?)\]', (ROOT / "pyproject.toml").read_text(), re.M | re.S).group(1)
    names = re.findall(r'"([\w.]+)"', declared)
    roots = {}
    for name in names:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations, name
        roots[name] = Path(list(spec.submodule_search_locations)[0])
    return roots


def module_files(roots: dict[str, Path]) -> dict[str, Path]:
    """Dotted name -> source file of every module under the roots (sub-folders included)."""
    out: dict[str, Path] = {}
    for pkg, d in roots.items():
        for p in sorted(d.rglob("*.py")):
            rel = p.relative_to(d).with_suffix("").parts
            if any(part.startswith(".") or part == "__pycache__" for part in rel):
                continue
            parts = rel[:-1] if rel[-1] == "__init__" else rel
            name = ".".join((pkg, *parts))
            if any(r.startswith(pkg + ".") and (name == r or name.startswith(r + ".")) for r in roots):
                continue  # a package of its own (goose_neuro.cli under goose_neuro/): listed from its root
            out[name] = p
    return out


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            found += [(f"{base}.{a.name}" if a.name != "*" else base, node.lineno) for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.args[0].value, node.lineno))
    return found


def violations(roots: dict[str, Path], allowed=frozenset(ALLOWED)) -> list[str]:
    """One line per import that runs against the direction."""
    bad = []
    for module, path in sorted(module_files(roots).items()):
        src = layer_of(module)
        for target, line in imports_of(module, path):
            dst = layer_of(target)
            if dst is None or dst == "hardware_profiles" or any(
                    (module, target) == a or (module == a[0] and target.startswith(a[1] + ".")) for a in allowed):
                continue
            if src == "hardware_profiles":
                ok = target.startswith(LEAF_MAY_IMPORT)
            else:
                ok = RANK[dst] <= RANK[src]
            if not ok:
                bad.append(f"{module} ({path.name}:{line}) imports {target}: the {src} layer may not import "
                           f"the {dst} layer")
    return bad


def test_the_check_sees_every_module_of_the_installed_package():
    files = module_files(installed_roots())
    layers = {layer_of(m) for m in files}
    assert layers == {"core", "export", "energy", "cli", "hardware_profiles"}
    for m in ("goose_neuro.model", "goose_neuro.training.loop", "goose_neuro.export.lower",
              "goose_neuro.energy.counts", "goose_neuro.cli.demo", "goose_neuro.tokenizer"):
        assert m in files, m
    # function-level imports are seen: the demo imports distill inside a stage function
    assert "goose_neuro.distill.distill" in [t for t, _ in imports_of("goose_neuro.cli.demo",
                                                                        files["goose_neuro.cli.demo"])]


def test_imports_follow_the_layers():
    assert violations(installed_roots()) == []


def test_allowed_exceptions_still_exist():
    """Each allow-list entry names an import that is really there (delete the entry when it goes)."""
    files = module_files(installed_roots())
    for module, target in ALLOWED:
        if module not in files:
            continue  # the module itself is gone
        got = [t for t, _ in imports_of(module, files[module])]
        assert any(t == target or t.startswith(target + ".") for t in got), (module, target)


@pytest.mark.parametrize("module_file, line, culprit, target", [
    ("goose_neuro/config.py", "from goose_neuro.cli import run_cli", "goose_neuro.config", "goose_neuro.cli"),
    ("export/lower.py", "import goose_neuro.energy.counts", "goose_neuro.export.lower", "goose_neuro.energy"),
    ("energy/counts.py", "importlib.import_module('goose_neuro.cli.demo')", "goose_neuro.energy.counts",
     "goose_neuro.cli"),
    ("hardware_profiles/__init__.py", "from goose_neuro import model", "goose_neuro.hardware_profiles",
     "goose_neuro.model"),
])
def test_a_planted_back_import_is_caught(tmp_path, module_file, line, culprit, target):
    """Copy the installed sources, plant one import inside a function, and see the check name it."""
    roots = installed_roots()
    copies = {pkg: tmp_path / pkg for pkg in roots}
    for pkg, d in roots.items():
        shutil.copytree(d, copies[pkg], ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(copies) == []
    rel = Path(module_file)
    pkg = {"goose_neuro": "goose_neuro", "export": "goose_neuro.export", "energy": "goose_neuro.energy",
           "hardware_profiles": "goose_neuro.hardware_profiles"}[rel.parts[0]]
    f = copies[pkg] / Path(*rel.parts[1:])
    f.write_text(f.read_text(encoding="utf-8") + f"\n\ndef _planted():\n    import importlib\n    {line}\n",
                 encoding="utf-8")
    found = violations(copies)
    assert len(found) == 1, found
    assert found[0].startswith(culprit + " ") and f"imports {target}" in found[0]
