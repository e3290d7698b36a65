"""Imports flow downstream only, nothing but baseline_model imports torch, and no package outgrows the rest.

Two kinds of check. The static ones parse every module under ``hzsr/`` with ``ast`` and collect
every import, function-level ones included (``import x``, ``from x import y``, relative imports
resolved), so an import that only runs in one verb is caught as surely as one at the top of a
file. The runtime ones import each package in a fresh interpreter and look at ``sys.modules``, which
also catches what an import pulls in indirectly.

The rules:

- ``ORDER`` is the data path, upstream first; a package imports only packages before it, and only
  those ``ALLOWED`` names. ``core`` imports no other package.
- ``LEAVES`` are single modules that a package upstream of (or beside) their own may import by
  name, because they define something real that needs only ``core``: the sync board as built
  (``sync.board``: the simulator renders it), and the host's private adb server and ``rig.yaml``
  (``capture.adb_server``, ``capture.rigfile``: the virtual rig attaches its phones to the one and
  writes the other). A leaf imports nothing of hzsr but ``core``.
- ``capture`` never imports ``vphone`` or ``sim``, at any level: host code reaches phones only over
  ADB and ``rig.yaml``, virtual or not. ``rig up --virtual`` therefore lives in ``vphone.cli``;
  ``hzsr.cli`` wires it into the ``rig`` stage.
- The top-level modules (``hzsr.cli``, ``hzsr.demo``, ``hzsr.report``) drive every stage and may
  import anything.
- ``capture/hooks.py`` runs ``qa``'s per-capture check through an entry point (``pyproject.toml``),
  which is not an import: ``capture`` does not depend on ``qa``.
- Only ``baseline_model`` imports torch (or the rest of the ``[train]`` extra), at any level.
- No package (top-level modules count one each) holds more than 20 % of the lines of Python under
  ``hzsr/``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hzsr"

#: The data path, upstream first.
ORDER = ("core", "sim", "capture", "vphone", "sync", "qa", "dataset", "browse", "baseline_model")
#: What each package may import: packages before it in ORDER, and LEAVES by name.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "sim": {"core", "sync.board"},
    "capture": {"core"},
    "vphone": {"core", "sim", "capture.adb_server", "capture.rigfile"},
    "sync": {"core"},
    "qa": {"core", "sync"},
    "dataset": {"core", "sync", "qa"},
    "browse": {"core", "qa", "dataset"},  # the curator's gallery over a data set (hzsr dataset browse)
    "baseline_model": {"core", "qa", "dataset"},
}
LEAVES = {"sync.board", "capture.adb_server", "capture.rigfile"}
TOP_LEVEL = {"cli", "demo", "report"}
#: The ``[train]`` extra: baseline_model's alone.
TRAIN_ONLY = {"torch", "torchvision", "onnx", "onnxruntime", "openvino"}
MAX_SHARE = 0.20


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. hzsr.qa.check
    target: str  # the imported module, absolute, e.g. hzsr.core.errors or torch
    names: tuple[str, ...]  # for ``from target import a, b``; empty for ``import target``
    line: int
    nested: bool  # inside a function or class, not at module level

    def where(self) -> str:
        return f"{self.module} line {self.line}{' (function-level)' if self.nested else ''}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[Import]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    # Module-level statements under if/try (e.g. ``if TYPE_CHECKING:``) still run at import time.
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        nested = id(node) not in top
        if isinstance(node, ast.Import):
            out += [Import(name, a.name, (), node.lineno, nested) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append(Import(name, target, tuple(a.name for a in node.names), node.lineno, nested))
    return out


MODULES = sorted(ROOT.rglob("*.py"))
IMPORTS = [imp for path in MODULES for imp in _imports(path)]


def _group(module: str) -> str:
    """The package a module of hzsr belongs to (``qa``), or its own name for a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _edges(imp: Import) -> list[str]:
    """The hzsr modules an import names: ``from hzsr.sync import board`` names ``hzsr.sync.board``."""
    if imp.target != "hzsr" and not imp.target.startswith("hzsr."):
        return []
    subs = [f"{imp.target}.{n}" for n in imp.names if _exists(f"{imp.target}.{n}")]
    return subs or [imp.target]


def _exists(module: str) -> bool:
    path = ROOT.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _allowed(src_group: str, target: str) -> bool:
    dst = _group(target)
    if src_group in TOP_LEVEL | {""} or dst in ("", src_group):  # `import hzsr` runs only hzsr/__init__.py
        return True
    rule = ALLOWED[src_group]
    return dst in rule or target.split(".", 1)[1] in rule & LEAVES


def test_every_package_has_a_rule():
    groups = {_group(_module_name(p)) for p in MODULES if p.parent != ROOT}
    assert groups == set(ORDER) == set(ALLOWED)
    assert {p.stem for p in ROOT.glob("*.py")} - {"__init__"} == TOP_LEVEL


def test_the_rules_flow_downstream():
    for pkg, rule in ALLOWED.items():
        for dst in rule:
            if dst in LEAVES:
                continue
            assert dst in ORDER and ORDER.index(dst) < ORDER.index(pkg), f"{pkg} may import {dst}: not upstream"


def test_leaves_import_only_core():
    for leaf in LEAVES:
        bad = [(e, imp.where()) for imp in IMPORTS if imp.module == f"hzsr.{leaf}" for e in _edges(imp)
               if _group(e) not in ("", "core")]
        assert not bad, f"hzsr.{leaf} is imported from upstream, so it may import only core: {bad}"


def test_imports_follow_the_package_graph():
    """Every import at every level, checked against ALLOWED (see the module docstring)."""
    bad = [f"{imp.where()} imports {e}" for imp in IMPORTS for e in _edges(imp)
           if not _allowed(_group(imp.module), e)]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_capture_never_imports_the_virtual_phones_or_the_simulator():
    bad = [f"{imp.where()} imports {e}" for imp in IMPORTS if _group(imp.module) == "capture"
           for e in _edges(imp) if _group(e) in ("vphone", "sim")]
    assert not bad, "\n".join(bad)


def test_no_torch_outside_baseline_model():
    """At any level: a function-level ``import torch`` in qa breaks a torch-free install just the same."""
    bad = [f"{imp.where()} imports {imp.target}" for imp in IMPORTS
           if imp.target.split(".")[0] in TRAIN_ONLY and _group(imp.module) != "baseline_model"]
    assert not bad, "only hzsr.baseline_model may import the [train] extra:\n" + "\n".join(bad)


def test_every_hzsr_import_resolves():
    """No import names a module that moved away (``hzsr.capture.virtual``, ``hzsr.capture.protocol``)."""
    bad = [f"{imp.where()} imports {imp.target}" for imp in IMPORTS
           if imp.target.startswith("hzsr.") and not _exists(imp.target)]
    assert not bad, "\n".join(bad)


def test_no_package_holds_more_than_a_fifth_of_the_code():
    lines: dict[str, int] = {}
    for path in MODULES:
        group = _group(_module_name(path)) if path.parent != ROOT else path.stem
        lines[group] = lines.get(group, 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    big = {g: f"{n} lines, {n / total:.0%}" for g, n in lines.items() if n > MAX_SHARE * total}
    assert not big, f"more than {MAX_SHARE:.0%} of hzsr's {total} lines of Python: {big}"


# -- runtime: what importing a package really loads ---------------------------------------------
def _closure(pkg: str) -> tuple[set[str], set[str]]:
    """Packages and leaf modules ``pkg`` may load, directly or through what it imports."""
    packages, leaves, todo = {pkg}, set(), [pkg]
    while todo:
        for dst in ALLOWED[todo.pop()]:
            if dst in LEAVES:
                leaves.add(dst)
            elif dst not in packages:
                packages.add(dst)
                todo.append(dst)
    return packages, leaves


@pytest.mark.parametrize("pkg", ORDER)
def test_importing_a_package_loads_only_what_it_may(pkg):
    modules = sorted(_module_name(p) for p in (ROOT / pkg).rglob("*.py"))
    code = (f"import sys\nfor m in {modules!r}:\n    __import__(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith('hzsr.')))\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, torch = out.stdout.strip().splitlines()
    packages, leaves = _closure(pkg)
    ok_leaves = {f"hzsr.{leaf}" for leaf in leaves} | {f"hzsr.{leaf.split('.')[0]}" for leaf in leaves}
    bad = [m for m in ast.literal_eval(loaded) if _group(m) not in packages and m not in ok_leaves]
    assert not bad, f"importing hzsr.{pkg} loads {bad}"
    if pkg != "baseline_model":
        assert torch == "False", f"importing hzsr.{pkg} loads torch"


def test_the_cli_starts_without_torch():
    code = "import sys, hzsr.cli; hzsr.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_optical_decoder_owes_nothing_to_the_simulator():
    """``sync/optical.py`` has its own measurement model of the board: no import of ``hzsr.sim``
    at any level, nor anything that pulls it in (issue 17: no round trip through one model)."""
    path = ROOT / "sync" / "optical.py"
    assert [i.where() for i in _imports(path) if i.target.startswith("hzsr.sim")] == []
    code = "import sys, hzsr.sync.optical\nprint(sorted(m for m in sys.modules if m.startswith('hzsr.sim')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
