"""What one rendering of a chat template may cost: time, size, memory (RenderLimits), and the checks
the sandbox (render/sandbox.py) runs to enforce them without trusting the template.

- size: every string or list a template builds through an operator, a call or a filter must stay
  within max_chars (--max-render-chars); where one step could allocate far more than its inputs
  (`'x' * 10**10`, `'x'|center(10**10)`, `'%0999999999d' % 1`, `[s] * n | join`) the check runs
  *before* the step. Integers stay under INT_BITS: `9**999999999` would need 3e9 bits and, once
  started, no signal can interrupt it.
- time and memory: in a process's main thread a SIGALRM tick every 50 ms (armed only while renderings
  run) interrupts a rendering past its deadline (--render-timeout) or one that grew the process by
  more than max(1 GiB, 8 x max_chars) bytes. Other threads get the deadline checked at every call
  and between output chunks.
"""

from __future__ import annotations

import _signal
import atexit
import functools
import math
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import jinja2

DEFAULT_RENDER_TIMEOUT = 10.0  # seconds per rendering; a normal one takes ~20-40 µs
DEFAULT_MAX_RENDER_CHARS = 64 << 20  # characters: 8x the default --max-record-bytes
INT_BITS = 1 << 16  # bits of any integer a template computes (~19,700 decimal digits)
MIN_RENDER_MEMORY = 1 << 30  # bytes a rendering may grow the process by (or 8 x max_chars if larger)
TICK = 0.05  # seconds between the timer's checks of the deadline and memory


@dataclass(frozen=True)
class RenderLimits:
    """What one rendering may cost. Example: RenderLimits(timeout=2.0, max_chars=1_000_000)"""

    timeout: float = DEFAULT_RENDER_TIMEOUT
    max_chars: int = DEFAULT_MAX_RENDER_CHARS

    @property
    def memory(self) -> int:
        """Bytes the process may grow by during one rendering."""
        return max(MIN_RENDER_MEMORY, 8 * self.max_chars)

    def check(self) -> list[str]:
        """Problems with the values. Example: RenderLimits(timeout=0).check() -> ["--render-timeout 0: ..."]"""
        problems = []
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) \
                or not 0 < self.timeout < math.inf:
            problems.append(f"--render-timeout {self.timeout!r}: expected a positive number of seconds")
        if isinstance(self.max_chars, bool) or not isinstance(self.max_chars, int) or self.max_chars < 1:
            problems.append(f"--max-render-chars {self.max_chars!r}: expected a positive integer")
        return problems


DEFAULT_LIMITS = RenderLimits()


class RenderLimitError(jinja2.exceptions.SecurityError):
    """A template tried to build something bigger than the limits allow."""


class Interrupt(BaseException):
    """Raised inside a rendering past its deadline or memory (BaseException: no `except Exception` in
    jinja or a template's own code swallows it)."""


# --- size ----------------------------------------------------------------------------------------

SIZED = (str, list, tuple)
# A width or precision in a %-format or str.format spec: "%0999999999d", "%.999999999f", "{:>999999999}"
_FORMAT_NUMBER = re.compile(r"%[-+ #0(a-zA-Z_)]*?(\d+)|%[^%]*?\.(\d+)|\{[^{}]*?[:.](?:[^{}\d]*)(\d+)")
# Filters that can make a string much bigger than their input in one step: they aggregate (join,
# tojson, string...) or take a width/count (center, indent, wordwrap...). The others (trim, upper,
# length, first, escape...) shrink or grow by a small factor at most, and run unwrapped (speed).
CHECKED_FILTERS = frozenset({"join", "tojson", "string", "pprint", "format", "replace", "center", "indent",
                             "wordwrap", "truncate", "urlize", "xmlattr", "sum", "urlencode", "list", "batch",
                             "slice", "filesizeformat"})


def too_big(what: str, size: int, limit: int) -> RenderLimitError:
    return RenderLimitError(f"{what} would make {size:,} characters, over --max-render-chars {limit:,}")


def deep_size(value: Any, limit: int) -> int:
    """Characters a value may turn into (string lengths + 1 per item); counting stops past `limit`.

    Example: ["ab", {"k": "cd"}] -> 10 (an upper bound of what join or tojson could make of it, roughly)
    """
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 1
        elif isinstance(item, (list, tuple)):
            total += len(item) + 1
            stack.extend(item)
        elif isinstance(item, dict):
            total += len(item) + 1
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += 1
    return total


def check_args(limit: int, name: str, args: tuple, kwargs: dict, *, skip: int = 0) -> None:
    """Refuse a call whose arguments could make more than `limit` characters in one step: a huge width
    or count (center, ljust, zfill, indent, lipsum, range...; the first `skip` arguments are data, not
    counts) or huge inputs (join, tojson)."""
    for value in (*args[skip:], *kwargs.values()):
        if type(value) is int and value > limit:
            raise RenderLimitError(f"{name}(): argument {value:,} is over --max-render-chars {limit:,}")
    size = deep_size((args, kwargs), limit)
    if size > limit:
        raise too_big(f"{name}()", size, limit)


def check_format(limit: int, name: str, fmt: Any) -> None:
    """A format string may not ask for a field wider than the limit ("%0999999999d", "{:>999999999}")."""
    if isinstance(fmt, str) and ("%" in fmt or "{" in fmt):
        for m in _FORMAT_NUMBER.finditer(fmt):
            width = int(next(g for g in m.groups() if g))
            if width > limit:
                raise RenderLimitError(f"{name}: format width {width:,} is over --max-render-chars {limit:,}")


def check_replace(limit: int, text: Any, old: Any, new: Any, count: Any = -1) -> None:
    """s.replace(old, new) grows s by (len(new) - len(old)) per occurrence: refuse a result over the limit.

    Example: ("a" * 1000, "a", "b" * 1000), limit 10**5 -> refused (1,000,000 characters)
    """
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        hits = len(text) + 1 if not old else text.count(old)
        hits = hits if not isinstance(count, int) or count < 0 else min(hits, count)
        size = len(text) + hits * (len(new) - len(old))
        if size > limit:
            raise too_big("replace", size, limit)


def check_mul(left: Any, right: Any, limit: int) -> None:
    """'x' * n, [..] * n, n * 'x' may not exceed the limit; int * int stays under INT_BITS."""
    if isinstance(left, SIZED) and type(right) is int or isinstance(right, SIZED) and type(left) is int:
        seq, n = (left, right) if isinstance(left, SIZED) else (right, left)
        if len(seq) * n > limit:
            raise too_big("'*'", len(seq) * n, limit)
    elif type(left) is int and type(right) is int and left.bit_length() + right.bit_length() > INT_BITS:
        raise RenderLimitError(f"'*' would make an integer of more than {INT_BITS:,} bits")


def check_pow(base: Any, exp: Any) -> None:
    """An integer power is one step no signal can interrupt: bound it beforehand.

    Example: 9 ** 999999999 -> refused (about 3.2e9 bits); 2 ** 64 -> fine
    """
    if isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1:
        if exp > INT_BITS or exp * abs(base).bit_length() > INT_BITS:
            raise RenderLimitError(f"'**' would make an integer of more than {INT_BITS:,} bits")


_NOT_DATA = (jinja2.Environment, jinja2.runtime.Context, jinja2.nodes.EvalContext)


def bounded_filter(func: Callable, name: str, limit_of: Callable[[], int]) -> Callable:
    """A filter that checks its arguments before and its result after the call."""

    @functools.wraps(func)  # keeps jinja's pass_environment/pass_context marks
    def wrapper(*args, **kwargs):
        limit = limit_of()
        data = tuple(a for a in args if not isinstance(a, _NOT_DATA))  # the value, then the filter's arguments
        check_args(limit, name, data, kwargs, skip=1)
        if name == "replace" and len(data) >= 3:
            check_replace(limit, *data[:4])
        elif name == "format" and data:
            check_format(limit, "format", data[0])
        result = func(*args, **kwargs)
        if isinstance(result, SIZED) and len(result) > limit:
            raise too_big(name, len(result), limit)
        return result

    return wrapper


# --- time and memory -----------------------------------------------------------------------------

class Budget:
    """The running rendering's deadline and memory ceiling."""

    __slots__ = ("deadline", "limits", "memory", "reason")

    def __init__(self, limits: RenderLimits, now: float):
        self.deadline = now + limits.timeout
        self.limits = limits
        self.memory: int | None = None  # the RSS ceiling, set at the timer's first tick
        self.reason = ""  # "time" or "memory" once interrupted


_ACTIVE: list[Budget | None] = [None]  # the main thread's running rendering, read by the signal handler
_ARMED_AT = [-math.inf]  # when the timer was last set: a tick is due within TICK of it
_local = threading.local()  # other threads' running rendering (no timer there)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_HAS_TIMER = hasattr(signal, "setitimer")


def _rss() -> int | None:
    """Resident memory of this process in bytes (Linux; None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _on_alarm(signum, frame) -> None:
    """Every TICK while a rendering runs: stop it past its deadline or memory, else tick again."""
    budget = _ACTIVE[0]
    if budget is None or budget.reason:  # no rendering now: the timer stops until the next one
        return
    if time.monotonic() >= budget.deadline:
        budget.reason = "time"
        raise Interrupt()
    rss = _rss()
    if rss is not None:
        if budget.memory is None:  # first tick of this rendering: the ceiling is measured from here
            budget.memory = rss + budget.limits.memory
        elif rss > budget.memory:
            budget.reason = "memory"
            raise Interrupt()
    _arm()


def _arm() -> None:
    signal.setitimer(signal.ITIMER_REAL, TICK)
    _ARMED_AT[0] = time.monotonic()


def _install() -> bool:
    """Make _on_alarm SIGALRM's handler if nobody else uses the signal; -> whether it is ours."""
    current = signal.getsignal(signal.SIGALRM)
    if current is _on_alarm:
        return True
    if current not in (signal.SIG_DFL, None) or signal.getitimer(signal.ITIMER_REAL)[0]:
        return False
    signal.signal(signal.SIGALRM, _on_alarm)
    return True


def start(limits: RenderLimits) -> tuple[Budget, bool]:
    """Begin timing one rendering; -> (its budget, whether the signal timer watches it).

    The timer serves the main thread only, and only while SIGALRM is ours (installed here if unused).
    Setting it costs a system call (~1 µs, a twentieth of a rendering), so it is set only when no
    tick is already due within TICK: back-to-back renderings share one. A tick that comes when no
    rendering runs does nothing and sets no next one.
    """
    now = time.monotonic()
    budget = Budget(limits, now)
    if _HAS_TIMER and threading.get_ident() == threading.main_thread().ident and (
            _signal.getsignal(signal.SIGALRM) is _on_alarm or _install()):  # the C call: no enum conversion
        _ACTIVE[0] = budget
        if now - _ARMED_AT[0] > TICK / 2:
            _arm()
        return budget, True
    _local.budget = budget
    return budget, False


def stop(timed: bool) -> None:
    if timed:
        _ACTIVE[0] = None
    else:
        _local.budget = None


def check_deadline() -> None:
    """Where no timer runs (other threads): the deadline is checked at calls and between output chunks."""
    budget = getattr(_local, "budget", None)
    if budget is not None and time.monotonic() >= budget.deadline:
        budget.reason = "time"
        raise Interrupt()


def _after_fork_in_child() -> None:
    _ARMED_AT[0] = -math.inf  # timers are not inherited: the child's first rendering sets its own
    _ACTIVE[0] = None


def _disarm_at_exit() -> None:
    """A tick still due when Python resets SIGALRM to its default at shutdown would kill the process
    ("Alarm clock", exit status 142): cancel it first."""
    if _HAS_TIMER and _signal.getsignal(signal.SIGALRM) is _on_alarm:
        signal.setitimer(signal.ITIMER_REAL, 0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_disarm_at_exit)
