"""Evaluating ``{{ … }}`` placeholders: a sandboxed, strict, bounded Jinja2 over the execution's scope.

The scope the interpreter passes holds ``record``, ``trigger``, ``steps``, ``vars``, ``workflow``,
``account`` and ``now``. Only the *definition* is a template: whatever the scope holds is data and
comes out as it went in, so a record whose title is ``{{ 7*7 }}`` stays ``{{ 7*7 }}``.

A string that is exactly one placeholder yields the expression's native value (``{{ record.tags }}``
is a list, ``{{ record.amount > 10 }}`` a bool); any other string with ``{{`` renders to text. An
undefined name, a blocked attribute, a limit or any other failure raises :class:`TemplateError`
naming the placeholder.

What a template may reach: the scope's data, the globals ``range``, ``dict`` and ``namespace``,
Jinja's filters (not ``pprint``), and a short list of methods of text, lists and maps
(``_METHODS``). Underscore attributes, mutating methods and every other callable are refused.

Limits, each a TemplateError naming it:

- ``range()`` gives at most ``MAX_RANGE`` items; loops run at most ``MAX_ITERATIONS`` times in all per
  render (one step's inputs, or one condition); recursive loops are refused.
- A text or list a template *builds* (``~``, ``+``, ``*``, ``%``, ``str.format``, filters, methods,
  list building in loops) is at most ``MAX_TEXT`` characters (a list measured as its text); what could
  be huge is sized *before* it is built (``'a' * n``, ``replace``, ``center``, ``join``, format widths),
  so no single C call can take the memory first. A rendered template, a captured block, a
  placeholder's value and what one filter's generator yields (``map``, ``select``, ``batch``) are at
  most ``MAX_OUTPUT``; a product or power of whole numbers at most ``_MAX_BITS`` bits.
- Time: a render has a budget (``RENDER_BUDGET``; a step's own ``timeout`` when that is shorter), checked
  at every loop iteration, call, filter, operator, attribute access and output piece. Filters that work
  word by word in pure Python (``wordwrap``, ``urlize``) take at most ``_SLOW_TEXT``, so that one call
  between two checks stays short.

Why a cooperative budget and not a signal, a trace function or a process: the engine renders in
worker threads (and HTTP threads render ``when``), and signals reach only the main thread;
``sys.settrace`` slows every line of Python by several times, fights coverage and debuggers, and
cannot stop a C call either; a process per render costs milliseconds on a path that takes
microseconds. A compiled Jinja template spends its time only in the places above (its loops are
rewritten at compile time to iterate through :meth:`_Sandbox.wfc_loop`, ``~`` to go through
:meth:`_Sandbox.wfc_concat`), and the C calls that could run long are sized first, so checking a
deadline there stops any template within about the budget, in any thread, and lets SIGTERM stop
``wfctl serve`` well inside its grace period. The budget lives in a ``ContextVar``: per thread.
"""

from __future__ import annotations

import functools
import re
import string
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.filters import make_attrgetter
from jinja2.runtime import markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from controller.errors import TemplateError
from controller.model import parse_duration
from controller.model.templates import RECURSIVE_LOOP

_CACHE_SIZE = 8192  # distinct template texts kept compiled; a repository holds a few thousand at most
_SHOWN = 80  # characters of a long template quoted in a message
_MAX_POWER = 1000  # larger exponents can take the worker down: 10 ** 10 ** 9
_MAX_BITS = 100_000  # bits of a whole number a product or a power may give (about 30,000 digits)
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}", re.DOTALL)

RENDER_BUDGET = 1.0  # seconds one render may take (a step's timeout, when shorter, instead)
MAX_RANGE = 10_000  # items one range() may give
MAX_ITERATIONS = 100_000  # loop iterations per render, all loops together
MAX_TEXT = 256 * 1024  # characters of a text or list a template builds
MAX_OUTPUT = 1024 * 1024  # characters of a rendered template, a captured block or a placeholder's value
_REMEMBERED = 32  # sizes of recently built lists kept per render
_SLOW_TEXT = 64 * 1024  # characters given to a filter that works in pure Python (wordwrap, urlize)

Expression = Callable[[Mapping[str, Any]], Any]

# Methods a template may call on data: reading, testing, splitting, case and padding. Others (translate,
# expandtabs, encode, to_bytes, copy, ...) can build huge values in one C call or hand out non-data.
_TEXT_METHODS = frozenset({
    "lower", "upper", "strip", "lstrip", "rstrip", "title", "capitalize", "casefold", "swapcase", "startswith",
    "endswith", "split", "rsplit", "splitlines", "partition", "rpartition", "find", "rfind", "index", "rindex",
    "count", "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "istitle", "isdecimal",
    "isnumeric", "isascii", "removeprefix", "removesuffix", "replace", "center", "ljust", "rjust", "zfill", "join",
})
_METHODS: dict[type, frozenset[str]] = {
    str: _TEXT_METHODS, dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"index", "count"}), tuple: frozenset({"index", "count"}),
}
_DROPPED_FILTERS = frozenset({"pprint"})  # a debugging aid that walks any structure in pure Python
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.DOTALL)
_FORMAT_WIDTH = re.compile(r"\d+")


class LimitError(SecurityError):
    """A template went past one of the limits of the module docstring."""


class _NotData(ValueError):
    """A placeholder gave a function, a class or another object that is not JSON data."""


class _Budget:
    """The limits of one render: a deadline, a count of loop iterations, and the sizes already measured."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.iterations = 0
        # id -> (list, size) of the lists built last (kept alive so that ids stay unique): a list built in
        # a loop is measured once, not again at each step; few are kept, so memory stays small.
        self.sizes: OrderedDict[int, tuple[Any, int]] = OrderedDict()

    def remember(self, value: Any, size: int) -> None:
        self.sizes[id(value)] = (value, size)
        if len(self.sizes) > _REMEMBERED:
            self.sizes.popitem(last=False)

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitError(f"the template ran longer than its budget of {self.seconds:g} s (a step's templates "
                             f"get at most {RENDER_BUDGET:g} s, or the step's timeout when shorter); make its loops "
                             f"smaller")

    def iterate(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            raise LimitError(f"loops ran more than {MAX_ITERATIONS} iterations in one render (the limit); "
                             f"loop over less data")
        self.tick()


_budget: ContextVar[_Budget | None] = ContextVar("wfctl_template_budget", default=None)


def _tick() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick()


# -- sizes ------------------------------------------------------------------------------------------


def text_size(value: Any, limit: int = MAX_OUTPUT) -> int:
    """About how many characters ``value`` makes as text (or JSON); stops counting past ``limit``.

    Shared references count each time they occur, as they would when printed: ``[big] * 1000`` is big.
    """
    budget = _budget.get()
    sizes = budget.sizes if budget is not None else {}
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif item is None or isinstance(item, bool | int | float | range):
            total += 8
        elif id(item) in sizes and sizes[id(item)][0] is item:
            total += sizes[id(item)][1]
        elif isinstance(item, Mapping):
            total += 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset | type({}.keys()) | type({}.values())
                        | type({}.items())):
            total += 2 * len(item) + 2
            stack.extend(item)
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, _Counted):
            total += item._held
        else:
            total += 64  # a macro, a loop, a generator: its text is its short repr
    return total


def _limit(size: int, what: str, limit: int = MAX_TEXT) -> None:
    if size > limit:
        raise LimitError(f"{what} would reach {size:,} characters; the limit is {limit:,} ({limit // 1024} KiB)")


def _built(value: Any, what: str, size: int | None = None) -> Any:
    """``value`` when the text or list a template built is within MAX_TEXT; a list's size is remembered
    (``size`` when the caller measured it already), so that building a list in a loop stays linear."""
    if isinstance(value, str):
        _limit(len(value), what)
    elif isinstance(value, list | tuple | dict):
        size = text_size(value, MAX_TEXT) if size is None else size
        _limit(size, what)
        budget = _budget.get()
        if budget is not None:
            budget.remember(value, size)
    return value


def _width(value: Any, what: str, limit: int = MAX_TEXT) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        raise LimitError(f"{what} is {value:,}; the limit is {limit:,}")


def _replace_size(text: Any, old: Any, new: Any, count: Any = None) -> int:
    text, old, new = str(text), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def _join_size(separator: Any, items: list[Any]) -> int:
    """About how long joining ``items`` would be; counting stops once it is past MAX_TEXT."""
    total = len(str(separator)) * max(0, len(items) - 1)
    for item in items:
        if total > MAX_TEXT:
            break
        total += len(item) if isinstance(item, str) else text_size(item, MAX_TEXT)
    return total


def _printf(template: str, values: Any) -> None:
    """Refuse a ``%`` format whose widths, ``*`` or repeated fields could build more than MAX_TEXT."""
    args = values if isinstance(values, tuple) else (values,)
    if isinstance(values, Mapping):
        args = tuple(values.values())
    widest = max((text_size(arg, MAX_TEXT) for arg in args), default=0)
    fields = 0
    for width, precision, _ in _PRINTF.findall(template):
        if "*" in (width, precision):
            raise LimitError("a '*' width in a % format is not allowed in a template; write the width")
        for number in (width, precision):
            if number:
                _width(int(number), "a width in a % format")
                widest = max(widest, int(number))
        fields += 1
    _limit(len(template) + fields * widest, "the formatted text")


def _format_method(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """The same check for ``str.format``: widths, nested ``{}`` in a spec, repeated big fields."""
    widest = max((text_size(arg, MAX_TEXT) for arg in (*args, *kwargs.values())), default=0)
    fields = 0
    for _, name, spec, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if spec and "{" in spec:
            raise LimitError("a nested {} in a format spec is not allowed in a template; write the width")
        for number in _FORMAT_WIDTH.findall(spec or ""):
            _width(int(number), "a width in a format spec")
            widest = max(widest, int(number))
        fields += 1
    _limit(len(template) + fields * widest, "the formatted text")


# -- filters ----------------------------------------------------------------------------------------


def _check_indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> None:
    per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 4
    _width(per_line, "the indent width")
    _limit(text_size(s, MAX_TEXT) + (str(s).count("\n") + 1) * per_line, "the indented text")


def _check_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    _limit(_replace_size(s, old, new, count), "the text after replace")


def _check_slow(value: Any, *_: Any, **__: Any) -> None:
    _limit(text_size(value, _SLOW_TEXT), "the text given to a filter that works word by word", _SLOW_TEXT)


def _check_sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise LimitError("sum adds numbers only in a template (start must be a number); use join for text")


# Filters whose result can be much larger than what they are given: checked before they run, their
# result measured after. (Filters that only reorder or pick from their input need neither.)
_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": lambda value, width=80: _width(width, "the width of center"),
    "indent": _check_indent,
    "replace": _check_replace,
    "wordwrap": _check_slow,
    "urlize": _check_slow,
    "format": lambda value, *args, **kwargs: _printf(str(value), kwargs or args),
    "batch": lambda value, linecount, fill_with=None: _width(linecount, "the size of a batch", MAX_RANGE),
    "slice": lambda value, slices, fill_with=None: _width(slices, "the number of slices", MAX_RANGE),
    "sum": _check_sum,
    "truncate": lambda s, length=255, *_, **__: None,
}
_AMPLIFYING = frozenset({*_FILTER_CHECKS, "join", "tojson", "urlencode", "xmlattr", "string", "e", "escape",
                         "forceescape"})
# Filters that turn any value into text: a list of shared references could print as gigabytes.
_STRINGIFYING = frozenset({"string", "e", "escape", "forceescape", "upper", "lower", "title", "capitalize", "trim",
                           "center", "indent", "wordwrap", "truncate", "striptags", "urlize", "wordcount",
                           "urlencode", "replace", "tojson", "safe", "format", "xmlattr"})


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the budget's clock, the size checks above, and its result measured when it can grow."""
    check = _FILTER_CHECKS.get(name)
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0  # the context Jinja passes first

    @functools.wraps(func)  # (keeps jinja_pass_arg, so Jinja still passes the context)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        given = args[skip:]
        if name in _STRINGIFYING and given:
            _limit(text_size(given[0], MAX_OUTPUT), f"the value given to the {name} filter", MAX_OUTPUT)
        if check is not None:
            check(*given, **kwargs)
        result = func(*args, **kwargs)
        if isinstance(result, types.GeneratorType):  # map, select, batch, ...: measured as they are read
            return _Counted(result, f"the items of the {name} filter", text_size(given[0], MAX_OUTPUT) if given else 0)
        return _built(result, f"the result of the {name} filter") if name in _AMPLIFYING else result

    return bounded


class _Counted:
    """A filter's generator, refused once what it has given passes MAX_OUTPUT: ``range(n) | map('center', w) |
    list`` builds each item within the limits and all of them together far past them. It counts as the size
    of what it reads from (``_held``), so a list of such generators cannot hold unmeasured text."""

    def __init__(self, items: Iterator[Any], what: str, held: int) -> None:
        self._items, self._what, self._held, self._total = items, what, held, 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        _tick()
        self._total += text_size(item, MAX_OUTPUT)
        _limit(self._total, self._what, MAX_OUTPUT)
        return item


def _join_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """``join`` that counts what it would build before building it (its input may be a generator)."""

    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        if attribute is not None:
            items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
        _limit(_join_size(d, items), "the joined text")
        return original(eval_ctx, items, d)

    join.jinja_pass_arg = original.jinja_pass_arg  # type: ignore[attr-defined]  # Jinja's pass_eval_context
    return join


# -- the environment --------------------------------------------------------------------------------


class _Bounded(NodeTransformer):
    """Rewrites a parsed template so that every loop and every ``~`` goes through the sandbox's checks."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        if node.recursive:
            raise TemplateSyntaxError(RECURSIVE_LOOP, node.lineno)
        node.iter = _call("wfc_loop", [node.iter], node)  # type: ignore[list-item]  # (an Expr: the loop's iterable)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call("wfc_concat", list(node.nodes), node)


def _call(method: str, args: list[nodes.Expr], where: nodes.Node) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(method, lineno=where.lineno), args, [], None, None,
                      lineno=where.lineno)
    if where.environment is not None:
        call.set_environment(where.environment)
    return call


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with data-only globals, allowed methods and the limits of this module."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        self.globals = {"range": _range, "dict": dict, "namespace": Namespace}  # no lipsum, cycler, joiner
        filters = {name: func for name, func in self.filters.items() if name not in _DROPPED_FILTERS}
        filters["join"] = _join_filter(filters["join"])
        self.filters = {name: _bounded_filter(name, func) for name, func in filters.items()}

    def make_globals(self, d: Mapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as a plain dict, not Jinja's ChainMap over the environment's: every render
        copies them into its context, and copying the ChainMap (twice) was most of what evaluating one
        ``{{ … }}`` cost. This environment's globals are set once, in ``__init__``, so nothing is missed."""
        return {**self.globals, **(d or {})}

    def compile(self, source: Any, name: str | None = None, filename: str | None = None, raw: bool = False,
                defer_init: bool = False) -> Any:
        if isinstance(source, str):
            source = self.parse(source, name, filename)
        return super().compile(_Bounded().visit(source), name, filename, raw, defer_init)  # type: ignore[call-overload]

    def concat(self, pieces: Iterable[str]) -> str:  # type: ignore[override]  # (Jinja's is "".join)
        """The rendered output, a captured block or a macro's text, counted piece by piece.

        (No budget tick per piece: every piece that costs time comes from a loop step, call, filter or
        operator that ticked already, and outside loops the pieces are bounded by the template's length.)
        """
        kept, total = [], 0
        for piece in pieces:
            total += len(piece)
            _limit(total, "the rendered text", MAX_OUTPUT)
            kept.append(piece)
        return "".join(kept)

    def wfc_loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """What every ``{% for %}`` iterates: the items, counted against the budget."""
        budget = _budget.get()
        for item in iterable:
            if budget is not None:
                budget.iterate()
            yield item

    def wfc_concat(self, *items: Any) -> str:
        """``a ~ b``: measured before it is built."""
        _limit(sum(len(item) if isinstance(item, str) else text_size(item, MAX_TEXT) for item in items),
               "the text built with ~")
        if any(hasattr(item, "__html__") for item in items):
            return str(markup_join(items))
        return "".join(map(str, items))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "**" and isinstance(right, int) and abs(right) > _MAX_POWER:
            raise SecurityError(f"the exponent {right} is too large (at most {_MAX_POWER})")
        if operator in ("*", "**") and isinstance(left, int) and isinstance(right, int):
            _check_bits(left, right, operator)
        size = None
        if operator == "*":
            size = _repeat_size(left, right)
            _limit(size, "repeating a text or list")
        if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            size = text_size(left, MAX_TEXT) + text_size(right, MAX_TEXT)
            _limit(size, "the text or list built with +")
        if operator == "%" and isinstance(left, str):
            _printf(left, right)
        return _built(super().call_binop(context, operator, left, right), f"the result of {operator}", size)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        owner = getattr(obj, "__self__", None)
        # A method of data: built in (str.center) or markupsafe's Python wrappers of the same (Markup.center).
        if isinstance(owner, str | list | tuple | dict | int | float):
            args = _checked_args(owner, getattr(obj, "__name__", ""), args)
        return _built(super().call(context, obj, *args, **kwargs), "the result of a call")

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        # Records are data: ``record.items`` is the record's field "items" when it has one, not
        # dict.items (Jinja's default order tries the attribute first).
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = str(value.__self__)

        def bounded(*args: Any, **kwargs: Any) -> str:
            _tick()
            if value.__name__ == "format_map":
                _format_method(template, (), args[0] if args and isinstance(args[0], Mapping) else {})
            else:
                _format_method(template, args, kwargs)
            return str(_built(wrapped(*args, **kwargs), "the formatted text"))

        return bounded


def _checked_args(owner: Any, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The arguments for a method of data, once it is on the allowed list and would not build too much."""
    allowed = next((methods for kind, methods in _METHODS.items() if isinstance(owner, kind)), frozenset())
    if name not in allowed:
        raise SecurityError(f"calling {type(owner).__name__}.{name}() is not allowed in a template")
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _width(args[0], f"the width of {name}")
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, *args[:3])
    elif name == "join" and args:
        items = list(args[0])  # (a generator can be read once: the call gets the list)
        _limit(_join_size(owner, items), "the joined text")
        return (items, *args[1:])
    return args


def _finalize(value: Any) -> Any:
    """What ``{{ x }}`` prints, once its text is known to fit."""
    _tick()
    if not isinstance(value, str):
        _limit(text_size(value, MAX_OUTPUT), "a printed value", MAX_OUTPUT)
    return value


def _range(*args: int) -> range:
    _tick()
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise LimitError(f"range() of {len(items)} items is more than the limit of {MAX_RANGE}")
    return items


def _check_bits(left: int, right: int, operator: str) -> None:
    """Refuse a product or power of whole numbers past _MAX_BITS: squaring in a loop doubles the digits each time,
    and one C multiplication of huge numbers cannot be interrupted."""
    bits = left.bit_length() + right.bit_length() if operator == "*" else left.bit_length() * abs(right)
    if abs(left) > 1 and bits > _MAX_BITS:
        raise LimitError(f"the number {operator} would have about {bits:,} bits; the limit is {_MAX_BITS:,}")


def _repeat_size(left: Any, right: Any) -> int:
    """How long ``left * right`` would be as text when it repeats a text or list, else 0."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(count, int) and not isinstance(count, bool):
            if isinstance(seq, str):
                return len(seq) * count
            if isinstance(seq, list | tuple):
                return text_size(seq, MAX_TEXT) * count
    return 0


def step_budget(timeout: Any) -> float:
    """The seconds a step's templates may take: RENDER_BUDGET, or the step's ``timeout`` when shorter."""
    if isinstance(timeout, str):
        return min(RENDER_BUDGET, float(parse_duration(timeout)))
    return RENDER_BUDGET


class Templates:
    """Compiles and evaluates templates; one instance serves every worker thread.

    Compiled templates are cached by their source text (``functools.lru_cache`` is thread-safe;
    two threads may compile the same text once each, which is harmless).
    """

    def __init__(self, cache_size: int = _CACHE_SIZE, budget: float = RENDER_BUDGET) -> None:
        # keep_trailing_newline: a YAML block body ends with a newline the author meant to keep.
        self._env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.budget = budget
        self._template: Callable[[str], Template] = functools.lru_cache(maxsize=cache_size)(
            self._env.from_string
        )
        self._expression: Callable[[str], Expression | None] = functools.lru_cache(maxsize=cache_size)(
            self._compile_expression
        )

    @contextmanager
    def limited(self, seconds: float | None = None) -> Iterator[None]:
        """Every render inside shares one budget: ``seconds`` (at most this instance's budget).

        Inside a budget already running (a render within a render) the outer one counts.
        """
        if _budget.get() is not None:
            yield
            return
        token = _budget.set(_Budget(self.budget if seconds is None else min(seconds, self.budget)))
        try:
            yield
        finally:
            _budget.reset(token)

    def render_step(self, value: Any, scope: Mapping[str, Any], timeout: Any = None) -> Any:
        """A step's inputs rendered under one budget: :func:`step_budget` of the step's ``timeout``."""
        with self.limited(step_budget(timeout)):
            return self.render(value, scope)

    def render(self, value: Any, scope: Mapping[str, Any]) -> Any:
        """``value`` with every placeholder in its strings evaluated against ``scope``.

        Dicts (values only, keys are names and stay as written) and lists are walked; strings
        without ``{{`` and non-strings come back unchanged. One budget covers the whole value.
        """
        if _budget.get() is not None:  # inside a budget already (a step's): what limited() would do, cheaper
            return self._render(value, scope)
        with self.limited():
            return self._render(value, scope)

    def _render(self, value: Any, scope: Mapping[str, Any]) -> Any:
        if isinstance(value, str):
            return self._render_text(value, scope) if "{{" in value else value
        if isinstance(value, dict):
            return {key: self._render(item, scope) for key, item in value.items()}
        if isinstance(value, list):
            return [self._render(item, scope) for item in value]
        return value

    def evaluate(self, text: str, scope: Mapping[str, Any]) -> Any:
        """The native value of a condition such as ``{{ record.status != 'closed' }}``.

        A condition that mixes text and placeholders renders to a string; judging its truth is the
        caller's business.
        """
        return self.render(text, scope)

    def _render_text(self, text: str, scope: Mapping[str, Any]) -> Any:
        try:
            expression = self._expression(text)
            if expression is not None:
                value = expression(scope)
                _limit(text_size(value, MAX_OUTPUT), "the value of the placeholder", MAX_OUTPUT)
                return _json_ready(value)
            return self._template(text).render(scope)
        except TemplateError:
            raise
        except Exception as error:  # every failure of a placeholder fails the step, named
            raise TemplateError(self._describe(text, scope, error)) from error

    def _compile_expression(self, text: str) -> Expression | None:
        """A callable giving the native value when ``text`` is one placeholder, else None."""
        source = _single_expression(self._env, text)
        if source is None:
            return None
        # undefined_to_none would turn a missing value into None silently; strict means an error.
        compiled = self._env.compile_expression(source, undefined_to_none=False)
        return lambda scope: compiled(scope)

    def _describe(self, text: str, scope: Mapping[str, Any], error: Exception) -> str:
        """``placeholder {{ x }}: why``, adding the template when the placeholder is only part of it."""
        reason = _reason(error)
        stripped = text.strip()
        if self._expression_or_none(text) is not None:
            return f"placeholder {stripped}: {reason}"
        if isinstance(error, LimitError):  # evaluating each placeholder again would spend the budget again
            return f"template {_quote(stripped)}: {reason}"
        culprit = self._failing_placeholder(text, scope)
        if culprit is None:
            return f"template {_quote(stripped)}: {reason}"
        return f"placeholder {culprit} in {_quote(stripped)}: {reason}"

    def _expression_or_none(self, text: str) -> Expression | None:
        try:
            return self._expression(text)
        except JinjaError:
            return None

    def _failing_placeholder(self, text: str, scope: Mapping[str, Any]) -> str | None:
        """The first ``{{ … }}`` of ``text`` that fails on its own, or None when that cannot be told.

        Inside ``{% … %}`` blocks a placeholder may use loop variables, so evaluating it alone would
        blame the wrong one; there the whole template is named instead.
        """
        if "{%" in text:
            return None
        for placeholder in _PLACEHOLDER.findall(text):
            try:
                expression = self._expression(placeholder)
                if expression is not None:
                    _json_ready(expression(scope))
            except Exception:  # noqa: BLE001  # this is the search for the one that fails
                return str(placeholder)
        return None


def _single_expression(env: ImmutableSandboxedEnvironment, text: str) -> str | None:
    """The expression inside ``text`` when ``text`` is exactly one ``{{ … }}``, else None."""
    stripped = text.strip()
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return None
    # The parse tells "{{ a }}" from "{{ a }} and {{ b }}", which the ends alone cannot.
    body = env.parse(stripped).body
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    outputs = body[0].nodes
    if len(outputs) != 1 or isinstance(outputs[0], nodes.TemplateData):
        return None
    inner = stripped[2:-2]
    # Whitespace control ("{{- x -}}") is template syntax, not part of the expression.
    if inner[:1] in ("-", "+"):
        inner = inner[1:]
    if inner[-1:] in ("-", "+"):
        inner = inner[:-1]
    return inner


def _json_ready(value: Any) -> Any:
    """A native result as JSON data: tuples and iterators become lists; anything else is refused."""
    if isinstance(value, Undefined):
        # StrictUndefined raises on use; a bare one returned from an expression has not been used yet.
        value._fail_with_undefined_error()
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)  # a Markup is a str subclass; keep plain text
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        # ``| map(...)`` and ``| select(...)`` give generators; the step wants their items.
        return [_json_ready(item) for item in value]
    raise _NotData(f"the value is a {type(value).__name__}, not data a step can hold "
                   f"(text, number, boolean, list or map)")


def _reason(error: Exception) -> str:
    """Jinja's own message for its errors; the type as well for anything else."""
    if isinstance(error, _NotData):
        return str(error)
    if isinstance(error, JinjaError):  # SecurityError included
        message = error.message or str(error)
        if isinstance(error, TemplateSyntaxError):
            return f"syntax error: {message}"
        return message
    return f"{type(error).__name__}: {error}"


def _quote(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "\u2026")


def truthy(value: Any) -> bool:
    """Whether a condition's value counts as true; text from a mixed template ("false", "0") does not."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none")
    return bool(value)
