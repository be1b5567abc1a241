"""Imports point down only (DESIGN.md, "Layers").

Every module under ``src/`` is parsed (nothing is imported), and every import
statement is collected, including those inside functions and ``if TYPE_CHECKING``
blocks; relative imports are resolved against the module's package. The test
then checks:

(a) ``napari_mmdl`` may import ``hyperspy_mmdl``, never the reverse;
(b) the core of ``hyperspy_mmdl`` (everything except the front ends ``signals``,
    ``cli`` and ``_frames``) never imports ``signals``, ``cli`` or ``napari_mmdl``;
(c) among ``hyperspy_mmdl``'s subpackages and top-level modules (the graph is
    built at the level of ``hyperspy_mmdl.<first component>``) a unit imports only
    itself or units listed below it in :data:`ORDER`, hence no import cycles.

Failures name every offending import as ``file:line  importer -> imported``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: hyperspy_mmdl's units, top to bottom; a unit may import only units below it (or itself).
#: ``checkpoint`` sits above ``models`` (DESIGN.md lists it below): loading a model file builds its
#: architecture through the models registry (``models.create(card.architecture, **card.config)``),
#: and no architecture needs the file format.
ORDER = (
    "cli", "signals", "_frames", "batch", "report", "train", "pipeline", "explain", "inference",
    "grains", "io", "preprocess", "validate", "checkpoint", "models", "synthetic", "tabular", "tables", "calibration",
    "errors",
)
FRONT_ENDS = {"signals", "cli", "_frames"}

#: Known violations, each (importing unit, imported unit). Keep this list minimal: an entry
#: that no longer occurs makes ``test_allow_list_is_not_stale`` fail, so it must be deleted.
ALLOWED: set = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute names imported by a ``from ... import ...`` (module and module.name for each name)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [f"{target}.{alias.name}" if alias.name != "*" else target for alias in node.names] or [target]


def collect_imports() -> list[tuple[str, str, Path, int]]:
    """``(importing module, imported name, file, line)`` for every import under ``src/``."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append((module, alias.name, path, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                for name in _resolve(module, is_package, node):
                    found.append((module, name, path, node.lineno))
    return found


#: the units that exist: sub-packages and top-level modules of hyperspy_mmdl
UNITS = {p.stem if p.is_file() else p.name for p in (SRC / "hyperspy_mmdl").iterdir()
         if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}


def _unit(name: str) -> str | None:
    """``hyperspy_mmdl.<first component>`` of a module name.

    ``None`` for the package itself and for names defined in its ``__init__``
    (``from hyperspy_mmdl import __version__``): the package root only holds the
    version and re-exports :class:`Calibration`.
    """
    parts = name.split(".")
    if parts[0] != "hyperspy_mmdl" or len(parts) < 2 or parts[1] not in UNITS:
        return None
    return parts[1]


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


IMPORTS = collect_imports()


def test_collects_imports_inside_functions_and_relative():
    """The walker sees lazy imports and resolves ``from ..x import y``."""
    seg = [(m, n) for m, n, _, _ in IMPORTS if m == "hyperspy_mmdl.grains.segment"]
    assert ("hyperspy_mmdl.grains.segment", "hyperspy_mmdl.preprocess.databar.DataBar") in seg
    assert len({m for m, *_ in IMPORTS}) > 60


def test_napari_mmdl_is_above_hyperspy_mmdl():
    bad = [f"{_where(p, ln)}  {m} -> {n}" for m, n, p, ln in IMPORTS
           if m.startswith("hyperspy_mmdl") and n.split(".")[0] == "napari_mmdl"]
    assert not bad, "hyperspy_mmdl must not import napari_mmdl:\n" + "\n".join(bad)


def test_core_does_not_import_front_ends():
    bad = []
    for m, n, p, ln in IMPORTS:
        unit = _unit(m)
        if unit is None or unit in FRONT_ENDS:
            continue
        target = _unit(n) if n.startswith("hyperspy_mmdl") else n.split(".")[0]
        if target in FRONT_ENDS | {"napari_mmdl"} and (unit, target) not in ALLOWED:
            bad.append(f"{_where(p, ln)}  {m} -> {n}")
    assert not bad, "core modules import front ends (signals, cli, _frames, napari_mmdl):\n" + "\n".join(bad)


def _violations():
    rank = {u: i for i, u in enumerate(ORDER)}
    bad, used = [], set()
    for m, n, p, ln in IMPORTS:
        src, dst = _unit(m), _unit(n)
        if src is None or dst is None or src == dst:
            continue
        if src not in rank or dst not in rank:
            bad.append(f"{_where(p, ln)}  {m} -> {n}  (unit not in ORDER: add it where it belongs)")
            continue
        if rank[dst] <= rank[src]:
            if (src, dst) in ALLOWED:
                used.add((src, dst))
                continue
            bad.append(f"{_where(p, ln)}  {m} -> {n}  ({src} is below {dst})")
    return bad, used


def test_imports_point_down_only():
    bad, _ = _violations()
    assert not bad, ("imports against the layer order " + " > ".join(ORDER) + ":\n" + "\n".join(bad))


def test_no_cycles_between_units():
    """No cycle in the unit graph, whatever the order (allow-listed edges included)."""
    graph = defaultdict(set)
    where = {}
    for m, n, p, ln in IMPORTS:
        src, dst = _unit(m), _unit(n)
        if src and dst and src != dst and (src, dst) not in ALLOWED:
            graph[src].add(dst)
            where.setdefault((src, dst), _where(p, ln))
    state, stack, cycles = {}, [], []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cyc = stack[stack.index(v):] + [v]
                cycles.append(" -> ".join(cyc) + "  via " + ", ".join(
                    where[(a, b)] for a, b in zip(cyc, cyc[1:])))
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u)
    assert not cycles, "import cycles between hyperspy_mmdl units:\n" + "\n".join(cycles)


def test_allow_list_is_not_stale():
    _, used = _violations()
    front = {(_unit(m), _unit(n)) for m, n, *_ in IMPORTS if _unit(m) and _unit(n)}
    stale = [pair for pair in ALLOWED if pair not in used and pair not in front]
    assert not stale, f"allow-listed imports that no longer occur (delete them from ALLOWED): {stale}"


#: ``hyperspy_mmdl.batch``'s modules, top to bottom; inside the package a module imports only
#: modules below it (the package ``__init__`` re-exports them all).
BATCH_ORDER = ("run", "lock", "executor", "outputs", "shards", "store", "parameters", "inputs", "frames")


def test_batch_modules_point_down_only():
    present = {p.stem for p in (SRC / "hyperspy_mmdl" / "batch").glob("*.py")} - {"__init__"}
    assert present == set(BATCH_ORDER), f"batch modules not in BATCH_ORDER: {present ^ set(BATCH_ORDER)}"
    rank = {u: i for i, u in enumerate(BATCH_ORDER)}
    bad = []
    for m, n, p, ln in IMPORTS:
        src, dst = m.split("."), n.split(".")
        if src[:2] != ["hyperspy_mmdl", "batch"] or dst[:2] != ["hyperspy_mmdl", "batch"]:
            continue
        if len(src) < 3 or len(dst) < 3 or dst[2] not in rank:
            continue  # the package __init__, or a name it defines
        if src[2] != dst[2] and rank[dst[2]] <= rank[src[2]]:
            bad.append(f"{_where(p, ln)}  {m} -> {n}")
    assert not bad, "imports against the order " + " > ".join(BATCH_ORDER) + ":\n" + "\n".join(bad)
