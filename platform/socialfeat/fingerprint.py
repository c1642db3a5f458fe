"""A fingerprint of the code a function runs: the source of every socialfeat function, class and constant it
reaches through the names it uses, so editing a stage's code changes its cache key (and nothing upstream's)."""

import hashlib
import inspect
import types
import weakref
from collections.abc import Callable

PACKAGE = "socialfeat"
_PLAIN = (int, float, str, bytes, bool, type(None))


def _in(module: str, packages: frozenset[str]) -> bool:
    return module.split(".")[0] in packages


def _codes(code: types.CodeType):
    """A code object and every code object nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _names(function: types.FunctionType) -> set[str]:
    return {name for code in _codes(function.__code__) for name in code.co_names}


def _plain(value) -> bool:
    if isinstance(value, (tuple, frozenset)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN)


class _Walk:
    """Walks socialfeat and the packages the roots were defined in (a method of one's own, a test's)."""

    def __init__(self, packages: frozenset[str]):
        self.packages = packages
        self.seen: set[int] = set()
        self.parts: dict[str, str] = {}  # "module:qualname" -> source (or repr of a constant)
        self.modules: set[tuple[str, frozenset]] = set()  # (module, the names looked up in it) already walked

    def source(self, obj) -> None:
        key = f"{obj.__module__}:{getattr(obj, '__qualname__', repr(obj))}"
        if key not in self.parts:
            try:
                self.parts[key] = inspect.getsource(obj)
            except (OSError, TypeError):  # made at run time (exec, a REPL): its bytecode stands for it
                self.parts[key] = repr(getattr(obj, "__code__", None) and obj.__code__.co_code)

    def visit(self, obj) -> None:
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        inner = getattr(obj, "py_func", None) or getattr(obj, "_function", None)  # numba dispatchers, ray.remote
        if inner is not None and inner is not obj:
            self.visit(inner)
        elif isinstance(obj, types.FunctionType) and self.ours(obj):
            self.function(obj)
        elif isinstance(obj, type) and self.ours(obj):
            self.cls(obj)
        elif isinstance(obj, dict):
            for value in obj.values():
                self.visit(value)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for value in obj:
                self.visit(value)
        elif hasattr(obj, "func") and hasattr(obj, "args"):  # functools.partial
            self.visit(obj.func)
            self.visit(obj.args)
        elif self.ours(type(obj)) and not isinstance(obj, types.ModuleType):
            self.visit(type(obj))
            self.visit(getattr(obj, "__dict__", {}))

    def ours(self, obj) -> bool:
        return _in(getattr(obj, "__module__", None) or "", self.packages)

    def function(self, function: types.FunctionType) -> None:
        self.source(function)
        wrapped = getattr(function, "__wrapped__", None)
        if wrapped is not None:
            self.visit(wrapped)
        for cell in function.__closure__ or ():
            try:
                self.visit(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
        names = _names(function)
        for name in names:
            self.name(function.__globals__, name, names)
        for default in function.__defaults__ or ():
            self.visit(default)

    def name(self, namespace: dict, name: str, names: set[str]) -> None:
        """A global the function uses; a module's attributes count when the function names them too."""
        if name.startswith("__"):  # __name__, __file__: where the code is, not what it does
            return
        if _in(name, self.packages) and name not in namespace:  # a late `from socialfeat.x import y`
            try:
                module = __import__(name, fromlist=["_"])
            except ImportError:  # an attribute that shares a package's name, not an import
                return
        elif name in namespace:
            module = namespace[name]
        else:
            return
        self.constant_or_code(namespace.get("__name__", "?"), name, module, names)

    def constant_or_code(self, module: str, name: str, value, names: set[str]) -> None:
        if isinstance(value, types.ModuleType):
            walked = (value.__name__, frozenset(names))
            if _in(value.__name__, self.packages) and walked not in self.modules:
                self.modules.add(walked)
                for attribute in names:
                    if not attribute.startswith("__") and hasattr(value, attribute):
                        self.constant_or_code(value.__name__, attribute, getattr(value, attribute), names)
        elif _plain(value):
            self.parts.setdefault(f"{module}:{name}", repr(value))
        else:
            self.visit(value)

    def cls(self, cls: type) -> None:
        self.source(cls)
        for base in cls.__mro__[1:]:
            if self.ours(base):
                self.visit(base)
        for value in vars(cls).values():
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                value = value.fget
            # a method the class's decorator generated (dataclass __init__, __repr__ ...) follows from the class
            # source; every dataclass's share one qualname, so keying them made the hash depend on visit order
            if isinstance(value, types.FunctionType) and not _generated(value):
                self.function(value)


def _generated(function: types.FunctionType) -> bool:
    """Code a decorator wrote (dataclass __init__, __repr__ under its recursion guard ...): no file behind it."""
    return inspect.unwrap(function).__code__.co_filename.startswith("<")


def _root_module(function) -> str:
    while hasattr(function, "func"):  # functools.partial
        function = function.func
    return getattr(function, "__module__", None) or ""


def code_parts(*functions: Callable) -> dict[str, str]:
    """{"module:qualname": source} of everything `functions` reach (for tests and for explaining a key)."""
    roots = {PACKAGE} | {_root_module(f).split(".")[0] for f in functions}
    walk = _Walk(frozenset(roots - {"", "builtins", "functools"}))
    for function in functions:
        walk.visit(function)
    return walk.parts


_CACHE: "weakref.WeakKeyDictionary[Callable, str]" = weakref.WeakKeyDictionary()


def code_fingerprint(*functions: Callable) -> str:
    """A short hash of the source of everything `functions` reach in the package (remembered per function
    object: the code a live function runs does not change until its module is loaded again)."""
    if len(functions) == 1:
        try:
            return _CACHE[functions[0]]
        except (KeyError, TypeError):
            pass
    digest = hashlib.sha256()
    for key, text in sorted(code_parts(*functions).items()):
        digest.update(key.encode())
        digest.update(b"\0")
        digest.update(text.encode())
        digest.update(b"\0")
    fingerprint = digest.hexdigest()[:16]
    if len(functions) == 1:
        try:
            _CACHE[functions[0]] = fingerprint
        except TypeError:  # not weakly referable
            pass
    return fingerprint
