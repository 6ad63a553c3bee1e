"""House rules that a reading of the code can check (cheap: no TensorFlow)."""

import ast
import pathlib

import slimtune
from slimtune import house

MAX_FUNCTION_LINES = 60

# The commands and the modules that may run them: the one list, slimtune/house.py.
COMMANDS = set(house.COMMANDS)
MAY_IMPORT_COMMANDS = set(house.MAY_IMPORT_COMMANDS)
REPOSITORY = pathlib.Path(slimtune.__file__).parent.parent


def long_functions(root):
    """``(path, function, lines)`` of every function over the limit, counted from its
    ``def`` line to its last line (docstring and comments included)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append((relative, node.name, lines))
    return found


def test_no_function_is_over_60_lines():
    root = pathlib.Path(slimtune.__file__).parent
    found = long_functions(root)
    assert not found, "split by meaning: " + ", ".join(
        f"{path} {name}() {lines} lines" for path, name, lines in found)


def test_the_check_counts_what_it_says(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    (package / "m.py").write_text(f"def fits():\n{body}\n\n\ndef over():\n{body}\n    x = 0\n")
    assert long_functions(package) == [("pkg/m.py", "over", MAX_FUNCTION_LINES + 1)]


def command_imports(root):
    """``(module, command)`` for every import of a command module by another module of
    the package (any ``import``, at the top or inside a function)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = path.relative_to(root).with_suffix("").as_posix().replace("/", ".")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == root.name:
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    root.name + "."):
                names = [node.module.split(".")[1]]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names
                         if a.name.startswith(root.name + ".")]
            else:
                continue
            found += [(module, name) for name in names
                      if name in COMMANDS and name != module.split(".")[0]]
    return found


def test_no_module_but_the_main_job_imports_a_command():
    root = pathlib.Path(slimtune.__file__).parent
    found = [(m, c) for m, c in command_imports(root)
             if m.split(".")[0] not in MAY_IMPORT_COMMANDS]
    assert not found, "move the shared piece below the commands: " + ", ".join(
        f"{module} imports {command}" for module, command in found)


def test_the_import_check_sees_every_form(tmp_path):
    package = tmp_path / "slimtune"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "a.py").write_text(
        "from slimtune import train, files\nimport slimtune.verify\n"
        "def f():\n    from slimtune.doctor import x\n")
    (package / "train.py").write_text("from slimtune.train import y\n")
    assert sorted(command_imports(package)) == [
        ("sub.a", "doctor"), ("sub.a", "train"), ("sub.a", "verify")]


def internal_tensorflow_imports(root):
    """``(module, imported)`` for every import of TensorFlow's internals
    (``tensorflow.python``, ``tensorflow.core``, ``tf_keras.src``, ``keras.src``)
    outside ``compat.py``, the one module that may know them."""
    internal = ("tensorflow.python", "tensorflow.core", "tf_keras.src", "keras.src")
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "compat.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [(path.relative_to(root).as_posix(), n) for n in names
                      if n.startswith(internal)]
    return found


def test_tensorflow_internals_live_only_in_compat():
    root = pathlib.Path(slimtune.__file__).parent
    found = internal_tensorflow_imports(root)
    assert not found, "move it into compat.py: " + ", ".join(f"{m} imports {n}"
                                                             for m, n in found)


def test_the_internals_check_sees_every_form(tmp_path):
    package = tmp_path / "slimtune"
    package.mkdir()
    (package / "compat.py").write_text("from tensorflow.python.framework import ops\n")
    (package / "a.py").write_text("import keras.src.layers\n"
                                  "def f():\n    from tensorflow.core.protobuf import x\n")
    assert sorted(internal_tensorflow_imports(package)) == [
        ("a.py", "keras.src.layers"), ("a.py", "tensorflow.core.protobuf")]


def test_every_module_is_on_the_map_and_the_readme_shows_it():
    """slimtune/house.py places every module of the package; README's Layout table is
    rendered from it (``python -m slimtune.house README.md`` after changing it)."""
    root = pathlib.Path(slimtune.__file__).parent
    missing = [p.relative_to(REPOSITORY).as_posix() for p in sorted(root.rglob("*.py"))
               if not house.on_the_map(p.relative_to(REPOSITORY).as_posix())]
    assert not missing, "add them to slimtune/house.py ROOMS: " + ", ".join(missing)
    assert all((REPOSITORY / f"slimtune/{m}.py").is_file()
               for m in house.COMMANDS + house.MAY_IMPORT_COMMANDS)
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    assert house.layout_table() in readme, "run: python -m slimtune.house README.md"
