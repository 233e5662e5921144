"""The package is layered: a module imports only from its own layer or the ones below it (any import statement,
also inside a function), so no import cycle can form between the stages."""
import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "recgpt"
# lowest first; a name is a subpackage of recgpt or a top-level module
LAYERS = [{"config"}, {"io", "logging"}, {"data"}, {"tokenizer"}, {"model"}, {"train"}, {"predict"},
          {"baselines"}, {"evaluate"}, {"errors", "cli", "launcher"}]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imports():
    """(importing module, imported module, file:line) for every recgpt import in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recgpt."):
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("recgpt.")]
            else:
                continue
            for target in targets:
                yield module_of(path), target, f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"


def test_every_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.stem != "__init__"}
    assert parts == set(LEVEL)


def test_no_upward_import():
    upward = [f"{where}: {part_of(a)} (layer {LEVEL[part_of(a)]}) imports {part_of(b)} (layer {LEVEL[part_of(b)]})"
              for a, b, where in imports() if part_of(a) != "__init__" and LEVEL[part_of(b)] > LEVEL[part_of(a)]]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_modules():
    graph = {}
    for a, b, _ in imports():
        if a != b and not b.startswith(a + "."):  # a package importing its own modules is not a cycle
            graph.setdefault(a, set()).add(b)
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)
