"""The codebase's shape, checked so a later change cannot quietly undo it: no import circle between lab's files or
between its packages (imports inside functions included: a lazy import hides a circle, it does not remove it), the
run does not import the feature packages, Hydra's global config and the environment are read in few places, a
plain run loads only what it needs, lab/train.py's functions come in the order they run, and files stay near
~300 lines (a warning, not a failure: files are split where their meaning splits)."""
import ast
import re
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "lab"
# Feature packages plug into the run; the run is lab/*.py, lab/dataset/, lab/model/ and lab/tracking/ (what one
# lab.train run needs; a tracker's code loads only when conf/logger chooses one).
FEATURES = ("lab.sweeps", "lab.tuning", "lab.report", "lab.study", "lab.bench")
WARN_LINES = 300


class LongFile(Warning):
    """A file of lab/ grew past ~300 lines: split it where its meaning splits, if it does."""


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
    return {m for m in found if m in modules} - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    files = sorted(LAB.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): lab_imports(p, modules) for p in files}


def package_of(module: str) -> str:
    return next((f for f in FEATURES if module == f or module.startswith(f + ".")), "lab")


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages = {}
    for module, targets in graph.items():
        packages.setdefault(package_of(module), set()).update(package_of(t) for t in targets)
    return {package: targets - {package} for package, targets in packages.items()}


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


def test_no_import_circle_between_files_or_packages():
    graph = import_graph()
    assert graph["lab.errors"] == set() and graph["lab.keys"] == set()  # the leaves every module may import
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    packages = package_graph(graph)
    assert set(packages) == {"lab", *FEATURES}
    assert find_cycle(packages) is None, " -> ".join(find_cycle(packages))


def test_the_run_imports_no_feature_package():
    graph = import_graph()
    reached = {m: sorted(t for t in targets if package_of(t) != "lab") for m, targets in graph.items()
               if package_of(m) == "lab"}
    assert {m: t for m, t in reached.items() if t} == {}


def files_that_match(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in LAB.rglob("*.py") if re.search(pattern, p.read_text()))


def test_hydras_global_config_and_the_environment_are_read_in_few_places():
    assert files_that_match(r"HydraConfig") == ["lab/context.py"]
    environment = files_that_match(r"os\.environ|os\.getenv|os\.putenv")
    assert len(environment) <= 3 and "lab/context.py" in environment, environment


def test_no_module_holds_run_state_in_a_global():
    """Module-level state that a run writes: a `global` statement, or a module-level name written through a
    subscript inside a function. lab/context.py's PROCESS is per process (a claimed GPU, jobs started), and
    says so."""
    offenders = []
    for path in LAB.rglob("*.py"):
        tree = ast.parse(path.read_text())
        module_names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                        if isinstance(t, ast.Name)}
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(function):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                    if isinstance(node, ast.AugAssign) else []
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {t.value.id}" for t in targets
                              if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                              and t.value.id in module_names]
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} global" for _ in [node]
                              if isinstance(node, ast.Global)]
    assert [o for o in offenders if not o.startswith("lab/context.py") or "PROCESS" not in o] == []
    assert any("PROCESS" in o for o in offenders)  # the check sees the one it allows


def test_a_plain_run_loads_only_the_run(digits_run):
    """conftest's digits run has PYTHONPROFILEIMPORTTIME set: its stderr lists every module it imported."""
    _, proc = digits_run
    loaded = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    lab_modules = sorted(m for m in loaded if m == "lab" or m.startswith("lab."))
    assert "lab.model" in lab_modules and "lab.trainer" in lab_modules  # the listing is real
    assert [m for m in lab_modules if package_of(m) != "lab"] == []
    # + lab.train itself, which runs as __main__: the training core, nothing of the report or sweep code
    assert len(lab_modules) + 1 <= 22, lab_modules


def test_files_stay_near_300_lines():
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in LAB.rglob("*.py")}
    for name, n in sorted(lines.items()):
        if n > WARN_LINES:
            warnings.warn(f"{name} has {n} lines: split it where its meaning splits", LongFile)
    assert max(lines.values()) < 2 * WARN_LINES  # twice the mark is no longer a file one reads in a sitting


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
