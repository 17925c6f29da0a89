"""The codebase's shape, checked so a later change cannot quietly undo it: no import circle in lab/ (imports
inside functions included: a lazy import hides a circle, it does not remove it), no file over 250 lines, and
lab/train.py's functions defined in the order they run."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "lab"
MAX_LINES = 250


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def lab_imports(path: Path, modules: set[str]) -> set[str]:
    """The lab modules that `path` imports anywhere in it; `from lab.x import y` counts lab.x.y when that is a
    module, else lab.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lab"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    files = sorted(LAB.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph = {module_name(p): lab_imports(p, modules) for p in files}
    # A package's __init__ runs before any of its modules: importing lab.x.y imports lab.x too.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if t in modules}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle_in_lab():
    graph = import_graph()
    assert "lab.errors" in graph and graph["lab.errors"] == set()  # the leaf every module may import
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_file_in_lab_is_over_250_lines():
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in LAB.rglob("*.py")}
    assert {name: n for name, n in lines.items() if n > MAX_LINES} == {}


def test_train_py_defines_its_functions_in_the_order_they_run():
    tree = ast.parse((LAB / "train.py").read_text())
    defined = [f.name for f in tree.body if isinstance(f, ast.FunctionDef)]
    calls = {f.name: [n.func.id for n in ast.walk(f) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
             for f in tree.body if isinstance(f, ast.FunctionDef)}
    order = []

    def visit(name):  # depth first, in the order each function calls the others
        order.append(name)
        for callee in calls[name]:
            if callee in calls and callee not in order:
                visit(callee)

    visit("main")
    for name in defined:  # the entry point (cli) calls main and comes last
        if name not in order:
            order.append(name)
    assert defined == order
