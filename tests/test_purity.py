"""The core is pure: no module of peersync_proto imports the world."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

FORBIDDEN = {
    "socket",
    "threading",
    "time",
    "random",
    "secrets",
    "os",
    "logging",
    "asyncio",
    "select",
    "h11",
    "subprocess",
    "multiprocessing",
    "signal",
    "pathlib",
    "io",
    "tempfile",
    "datetime",
    "uuid",
    "concurrent",
    "shutil",
    "selectors",
}
CORE = pathlib.Path(__file__).resolve().parent.parent / "peersync_proto"


def imported_modules(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            names.add("__import__")
    return names


def test_no_core_module_imports_io_clock_threads_or_randomness() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 10
    for path in files:
        bad = imported_modules(path) & (FORBIDDEN | {"__import__"})
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_purity_check_would_catch_an_import(tmp_path: pathlib.Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os.path\nfrom time import monotonic\nimport json\n__import__('socket')\n"
    )
    assert imported_modules(probe) & (FORBIDDEN | {"__import__"}) == {"os", "time", "__import__"}


def test_importing_the_core_starts_no_thread_and_loads_no_socket() -> None:
    code = (
        "import sys, threading; before = set(sys.modules); n = threading.active_count();"
        "import peersync_proto;"
        "new = set(sys.modules) - before;"
        "io_mods = ('socket', 'h11', 'asyncio', 'select', 'random', 'secrets');"
        "bad = {m for m in new if m.split('.')[0] in io_mods};"
        "assert not bad, bad; assert threading.active_count() == n; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr


def test_public_init_exports_exactly_its_all() -> None:
    import peersync_proto

    assert sorted(peersync_proto.__all__) == sorted(set(peersync_proto.__all__))
    for name in peersync_proto.__all__:
        assert hasattr(peersync_proto, name), name
    private = [
        n for n in vars(peersync_proto) if not n.startswith("_") and n not in peersync_proto.__all__
    ]
    assert set(private) <= {"replay", "shim"}, private
