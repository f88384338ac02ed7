"""The package's shape, checked on its source: layers import downwards, no cycles, small modules.

The layers, bottom to top (README "What is where"): tools → rules → landscapes → simulate →
analysis → engine → its clients (landscape sweeps, training; data and models) → tuning →
figures, bench, view → CLI. A module may import its own layer or any below it, at module
level or inside a function; the package fronts (``__init__``) are exempt, since they name
their entry points lazily.
"""
import ast
import pathlib

import pytest

import dynsim

PKG = pathlib.Path(dynsim.__file__).parent

LAYERS = [
    ("tools", ["dynsim.checks", "dynsim.numerics", "dynsim.provenance", "dynsim.labelled", "dynsim.hessian",
               "dynsim.imports"]),
    ("rules", ["dynsim.optim"]),
    ("landscapes", ["dynsim.landscapes"]),
    ("simulate", ["dynsim.run"]),
    ("analysis", ["dynsim.analysis", "dynsim.cycles", "dynsim.ntk", "dynsim.ode", "dynsim.control"]),
    ("engine", ["dynsim.metrics", "dynsim.engine"]),
    ("clients", ["dynsim.data", "dynsim.models", "dynsim.training"]),
    ("tuning", ["dynsim.tuning"]),
    ("outputs", ["dynsim.figures", "dynsim.bench", "dynsim.view"]),
    ("cli", ["dynsim.cli", "dynsim.cli_data", "dynsim.__main__"]),
]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to the README's table)")
    return best[0]


def _imports(module: str, tree: ast.AST, *, top_level_only: bool = False):
    """(line, imported dynsim module, names) for each import in ``tree``."""
    is_pkg = MODULES[module].name == "__init__.py"
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "dynsim":
                    yield node.lineno, a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "dynsim":
                continue
            for a in node.names:  # `from dynsim.x import y`: y may be a module itself
                sub = f"{target}.{a.name}"
                yield node.lineno, sub if sub in MODULES else target, [a.name]


def _trees():
    return {m: ast.parse(p.read_text(), str(p)) for m, p in MODULES.items()}


TREES = _trees()


def test_every_module_is_in_a_layer():
    for m in MODULES:
        if m != "dynsim":
            _layer(m)


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for m, tree in TREES.items():
        if MODULES[m].name == "__init__.py" and m.count(".") <= 1:
            continue  # the fronts name their entry points (lazily)
        for line, target, _ in _imports(m, tree):
            if target == "dynsim" or target not in MODULES and not any(k.startswith(target) for k in MODULES):
                continue
            if _layer(target) > _layer(m):
                bad.append(f"{MODULES[m].relative_to(PKG.parent)}:{line} ({LAYERS[_layer(m)][0]}) imports "
                           f"{target} ({LAYERS[_layer(target)][0]})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_module_level_imports_have_no_cycle():
    graph = {m: {t for _, t, _ in _imports(m, tree, top_level_only=True) if t in MODULES and t != m}
             for m, tree in TREES.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for t in sorted(graph[m]):
            visit(t, path + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def test_no_private_name_is_imported_across_packages():
    bad = []
    for m, tree in TREES.items():
        home = m.rsplit(".", 1)[0] if MODULES[m].name != "__init__.py" else m
        for line, target, names in _imports(m, tree):
            target_home = target if MODULES.get(target, PKG).name == "__init__.py" else target.rsplit(".", 1)[0]
            last = target.rsplit(".", 1)[-1]
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [last] if last.startswith("_") and not last.startswith("__") else []
            if private and target_home != home:
                bad.append(f"{MODULES[m].relative_to(PKG.parent)}:{line} imports {', '.join(private)} from {target}")
        # and `module._private` through an imported module of another package
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a, (_, target, _) in zip(node.names, _imports(m, ast.Module([node], []))):
                    if target in MODULES and (isinstance(node, ast.Import) and a.asname or
                                              isinstance(node, ast.ImportFrom) and target.endswith("." + a.name)):
                        aliases[a.asname or a.name] = target
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                target = aliases[node.value.id]
                target_home = target if MODULES[target].name == "__init__.py" else target.rsplit(".", 1)[0]
                if target_home != home:
                    bad.append(f"{MODULES[m].relative_to(PKG.parent)}:{node.lineno} uses {target}.{node.attr}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("limit", [MAX_MODULE_LINES])
def test_modules_are_small_outside_figures(limit):
    big = {m: n for m, p in MODULES.items() if not m.startswith("dynsim.figures")
           and (n := len(p.read_text().splitlines())) > limit}
    assert not big, f"modules over {limit} lines: {big}"


def test_functions_are_short_outside_figures():
    long = []
    for m, tree in TREES.items():
        if m.startswith("dynsim.figures"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{MODULES[m].relative_to(PKG.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 120 lines:\n" + "\n".join(long)


def test_dir_lists_every_entry_point_and_import_is_light():
    import subprocess
    import sys

    names = set(dir(dynsim))
    assert {"simulate", "sweep", "locate", "open_result", "train", "tune"} <= names
    assert not {"importlib", "annotations"} & names
    code = "import sys, dynsim; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # entry points and JAX load on first use
