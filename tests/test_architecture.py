"""The package's own imports form no cycle, and outside `cli/` every import of kohya-wrap's own modules
is at the top of the module (a cycle cannot hide inside a function). Lazy imports stay only for heavy
third-party modules (torch, transformers, pyvips, git, PIL, …), so start-up stays fast."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kohya_wrap"
# run inside sd-scripts' own venv: they import nothing of kohya-wrap's
STANDALONE = {"kohya_wrap.sdscripts.introspect", "kohya_wrap.sdscripts.tinymodel"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def own_imports(path: Path) -> list[tuple[str, ast.AST, bool]]:
    """(module imported, node, at the top level) for every import of a kohya_wrap module, outside
    `if TYPE_CHECKING:` blocks (type names only: no import at run time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    top = {id(node) for node in tree.body}
    for node in tree.body:  # imports under a top-level try/if (e.g. version switches) are top-level too
        if isinstance(node, (ast.If, ast.Try)) and not _type_checking_block(node):
            top |= {id(n) for n in ast.walk(node)}
    hidden = {id(n) for node in ast.walk(tree) if _type_checking_block(node) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found += [(name, node, id(node) in top) for name in names if name.split(".")[0] == "kohya_wrap"]
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        name: {target for target, _, _ in own_imports(path) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_own_modules_are_imported_at_the_top_outside_the_cli():
    inside_functions = [
        f"{name}:{node.lineno} imports {target}"
        for name, path in sorted(MODULES.items())
        if not name.startswith("kohya_wrap.cli") and name not in STANDALONE
        for target, node, at_top in own_imports(path)
        if not at_top
    ]
    assert inside_functions == []


def test_processes_start_only_through_launch_process():
    """One way to start a process kohya-wrap supervises (its own group, output drained, stopped without
    orphans): launch/process.py. The standalone scripts that run inside sd-scripts' venv are exempt."""
    starters = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}
    found = []
    for name, path in sorted(MODULES.items()):
        if name in STANDALONE or name == "kohya_wrap.launch.process":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = node.func if isinstance(node, ast.Call) else None
            if isinstance(call, ast.Attribute) and isinstance(call.value, ast.Name):
                if (call.value.id, call.attr) in {("subprocess", s) for s in starters} | {
                    ("os", "system"),
                    ("os", "popen"),
                }:
                    found.append(f"{name}:{node.lineno} {call.value.id}.{call.attr}")
    assert found == []
