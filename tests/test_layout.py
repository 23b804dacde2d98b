"""The house plan's rules, checked against the code: which room may import which, and no import runs back up.

docs/architecture.md draws the same arrows; a change of layout changes both in one commit.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Room -> the rooms it may import (directly or lazily inside a function). Everything points down.
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "ingest": {"foundation"},
    "featurize": {"foundation", "ingest"},
    "models": {"foundation", "ingest", "featurize"},
    "monitor": {"foundation", "ingest", "featurize", "models"},
    "serve": {"foundation", "ingest", "featurize", "models", "monitor"},
    "ltgcast": {"foundation", "ingest", "featurize", "models", "monitor", "serve"},
}
ROOMS = set(ALLOWED)
#: serve's rooms -> the serve rooms each may import; ``metrics`` is the shared counter module every room may use.
SERVE_ALLOWED: dict[str, set[str]] = {
    "metrics": set(),
    "stores": {"metrics"},
    "scoring": {"metrics"},
    "products": {"metrics", "stores"},
    "alerts": {"metrics", "stores"},
    "api": {"metrics", "stores", "products", "alerts"},
    "worker": {"metrics", "stores", "scoring"},
}
#: Libraries that must stay out of the pure kernels (STYLE.md: featurize is arrays in, arrays out).
NOT_IN_FEATURIZE = {"tensorflow", "keras", "kafka", "redis", "prometheus_client", "netCDF4", "grpc", "boto3"}


def _imports(path: Path, *, eager_only: bool = False) -> set[str]:
    """Absolute module names a file imports: anywhere in it (lazy imports are arrows too), or at module level."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    nodes = _module_level(tree) if eager_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _module_level(tree: ast.Module) -> list[ast.stmt]:
    """Statements that run on import (``if TYPE_CHECKING:`` blocks do not)."""
    out: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        out.extend(
            [node, *(n for n in ast.walk(node) if isinstance(n, ast.stmt) and isinstance(node, ast.Try | ast.If))]
        )
    return out


def _module(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _product_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for room in ROOMS for p in (root / room).rglob("*.py"))


def room_arrows(root: Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """(from room, to room) -> the modules under ``root`` that draw the arrow."""
    arrows: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in _product_files(root):
        room = path.relative_to(root).parts[0]
        for name in _imports(path):
            top = name.split(".")[0]
            if top in ROOMS and top != room:
                arrows[(room, top)].append(f"{_module(path, root)} -> {name}")
    return arrows


def upward(arrows: dict[tuple[str, str], list[str]]) -> dict[tuple[str, str], list[str]]:
    """The arrows the plan does not allow, with (at most three of) the imports that draw each."""
    return {arrow: sorted(set(where))[:3] for arrow, where in arrows.items() if arrow[1] not in ALLOWED[arrow[0]]}


def test_every_import_between_rooms_points_down() -> None:
    arrows = room_arrows()
    against = upward(arrows)
    assert not against, f"imports against the house plan (docs/architecture.md): {against}"
    # the plan's arrows are the code's: an arrow allowed but never drawn is a stale plan
    assert ("serve", "monitor") in arrows
    assert ("featurize", "ingest") in arrows


def test_every_package_of_the_product_is_a_room_of_the_plan() -> None:
    # a new top-level package outside the plan would escape every arrow check above
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == ROOMS, f"packages on disk {sorted(packages)}, rooms in the plan {sorted(ROOMS)}"


def serve_arrows() -> dict[tuple[str, str], list[str]]:
    """(from serve room, to serve room) -> the modules that draw the arrow."""
    arrows: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted((ROOT / "serve").rglob("*.py")):
        parts = path.relative_to(ROOT / "serve").parts
        if len(parts) == 1 and parts[0] == "__init__.py":
            continue
        room = parts[0] if len(parts) > 1 else path.stem
        for name in _imports(path):
            bits = name.split(".")
            if bits[0] == "serve" and len(bits) > 1 and bits[1] != room:
                arrows[(room, bits[1])].append(f"{_module(path)} -> {name}")
    return arrows


def test_serve_rooms_point_down() -> None:
    arrows = serve_arrows()
    assert {room for room, _ in arrows} <= set(SERVE_ALLOWED), f"a serve room the plan does not know: {arrows}"
    upward = {arrow: where[:3] for arrow, where in arrows.items() if arrow[1] not in SERVE_ALLOWED[arrow[0]]}
    assert not upward, f"imports between serve rooms against docs/architecture.md: {upward}"
    assert ("api", "products") in arrows
    assert ("worker", "scoring") in arrows


def test_the_product_never_imports_its_tests() -> None:
    offenders = [f"{_module(p)} -> {n}" for p in _product_files() for n in _imports(p) if n.split(".")[0] == "tests"]
    assert not offenders


@pytest.mark.parametrize("path", sorted((ROOT / "featurize").rglob("*.py")), ids=lambda p: p.name)
def test_featurize_stays_pure(path: Path) -> None:
    heavy = {n for n in _imports(path) if n.split(".")[0] in NOT_IN_FEATURIZE}
    assert not heavy, f"{path.name} imports {sorted(heavy)}"


def test_no_two_modules_import_each_other_on_import() -> None:
    # A registry may import an implementation lazily inside its factory (the implementation imports the
    # family's protocol from it); on import, no two modules may need each other.
    modules = {_module(p): p for p in _product_files()}
    graph = {name: {n for n in _imports(path, eager_only=True) if n in modules and n != name}
             for name, path in modules.items()}  # fmt: skip
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph.get(b, set())})
    assert not pairs, f"modules importing each other: {pairs}"


def test_the_arrow_check_sees_an_upward_import(tmp_path: Path) -> None:
    # the check itself must be able to fail: a lazy import from ingest up into serve is reported, naming it
    (tmp_path / "ingest").mkdir()
    bad = tmp_path / "ingest" / "x.py"
    bad.write_text("import numpy\nfrom foundation import utc\n\ndef f():\n    from serve.api.grids import GridApi\n")
    assert "serve.api.grids" not in _imports(bad, eager_only=True)
    found = upward(room_arrows(tmp_path))
    assert found == {("ingest", "serve"): ["ingest.x -> serve.api.grids", "ingest.x -> serve.api.grids.GridApi"]}
