"""Objects describe themselves; nobody writes another's private fields.

An ``ast`` walk over the package: no module assigns to ``obj._name`` (or ``setattr(obj, "_name", ...)``) where
``obj`` is not ``self`` or ``cls``; the checkpoint, which saves and restores other objects' state, does not even
read one: it goes through their ``state_dict``/``load_state_dict``. What is left is listed below with its reason.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastnn"
OWNERS = {"self", "cls"}

# (module, the attribute as written): why it must be written from outside its owner.
ALLOWED_WRITES = {
    ("_config.py", "dispatcher._cache"): "Numba's Dispatcher has no public way to set its cache class: this is what "
                                         "Dispatcher.enable_caching does, with fastnn's healing cache",
    ("kernels/_aot_build.py", "codegen.AOTCPUCodegen._customize_tm_features"):
        "numba.pycc passes no CPU features to LLVM and has no option for it; the build (setup.py only) patches it",
}
READS_NOTHING_PRIVATE = ("checkpoint.py",)


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _foreign(node):
    """``node`` (an Attribute) names a private field of something other than ``self``/``cls``."""
    return _private(node.attr) and not (isinstance(node.value, ast.Name) and node.value.id in OWNERS)


def _targets(node):
    if isinstance(node, ast.Assign):
        roots = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
        roots = [node.target]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        roots = [item.optional_vars for item in node.items if item.optional_vars is not None]
    elif isinstance(node, ast.Delete):
        roots = node.targets
    else:
        return []
    return [t for root in roots for t in ast.walk(root) if isinstance(t, ast.Attribute) and t.ctx != ast.Load()]


def _writes(tree):
    """``[(line, source)]`` of every write to a foreign private attribute."""
    found = []
    for node in ast.walk(tree):
        found += [(t.lineno, ast.unparse(t)) for t in _targets(node) if _foreign(t)]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) and _private(node.args[1].value) \
                and not (isinstance(node.args[0], ast.Name) and node.args[0].id in OWNERS):
            found.append((node.lineno, ast.unparse(node)))
    return found


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def test_no_module_writes_another_objects_private_fields():
    bad, used = [], set()
    for rel, tree in _modules():
        for line, source in _writes(tree):
            if (rel, source) in ALLOWED_WRITES:
                used.add((rel, source))
            else:
                bad.append(f"{rel}:{line}: {source}")
    assert not bad, "private fields written from outside their owner (give the owner a method):\n" + "\n".join(bad)
    assert used == set(ALLOWED_WRITES), f"allowed writes no longer made: drop them: {set(ALLOWED_WRITES) - used}"


def test_the_checkpoint_reads_no_private_field():
    for rel, tree in _modules():
        if rel in READS_NOTHING_PRIVATE:
            reads = [f"{rel}:{n.lineno}: {ast.unparse(n)}" for n in ast.walk(tree)
                     if isinstance(n, ast.Attribute) and _foreign(n)]
            assert not reads, "the checkpoint reads private state (use state_dict):\n" + "\n".join(reads)


def test_the_walk_sees_what_it_forbids():
    tree = ast.parse("model._fit_loss = loss\nloss._grad = None\nself._x = 1\nes._wait += 1\n"
                     "setattr(layer, '_key', k)\nobj.public = 2\nfor a._i in x: pass\n")
    assert [s for _, s in _writes(tree)] == ["model._fit_loss", "loss._grad", "es._wait", "a._i",
                                              "setattr(layer, '_key', k)"]
