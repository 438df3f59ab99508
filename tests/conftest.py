import dis
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _reaches_mpirun(func, cls=None) -> bool:
    """Does ``func`` call ``mpirun`` (tests/mpirun.py), directly or through functions
    of its own module or methods of its class (helpers, nested functions, lambdas,
    comprehensions)?"""
    module_globals = func.__globals__
    methods = {n: m for n, m in vars(cls).items()
               if isinstance(m, types.FunctionType)} if cls else {}
    stack, seen = [func.__code__], set()
    while stack:
        code = stack.pop()
        if code in seen:
            continue
        seen.add(code)
        if "mpirun" in code.co_varnames:  # a local ``from mpirun import mpirun``
            return True
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        for ins in dis.get_instructions(code):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                if ins.argval == "mpirun":
                    return True
                obj = module_globals.get(ins.argval)
                if isinstance(obj, types.FunctionType) \
                        and obj.__globals__ is module_globals:
                    stack.append(obj.__code__)
            elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and ins.argval in methods:
                stack.append(methods[ins.argval].__code__)
    return False


def pytest_collection_modifyitems(config, items):
    """Mark every test that launches MPI through tests/mpirun.py with ``mpi`` (found from
    its code, so new tests are marked without anyone remembering to); a test can also
    carry ``@pytest.mark.mpi`` itself."""
    for item in items:
        func = getattr(item, "function", None)
        if func is None or item.get_closest_marker("mpi"):
            continue
        if _reaches_mpirun(func, getattr(item, "cls", None)):
            item.add_marker(pytest.mark.mpi)
