"""Reading what a consumer's arq worker wrote about a delivery, without trusting it.

arq stores each finished job's outcome at ``arq:result:<job id>``, serialized with the
*consumer's* ``job_serializer``: JSON for ours, pickle for a worker on arq's
defaults. A shared Redis must never be a way to run code in the daemon, so a
pickled result is never given to ``pickle.loads``: ``read`` parses it with an
unpickler whose every class is an inert stand-in (it records the module, name and
arguments it was built with; constructing or "restoring" it runs nothing of the real
class). Pure: bytes in, an ``Outcome`` out, never an exception.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from typing import Any

# A result bigger than this is not parsed (arq's own are a few kB plus the payload).
MAX_RESULT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    success: bool
    reason: str  # why it failed, in one line ("" on success)
    tries: int  # arq's try counter when it finished (0 if unknown)


class StandIn:
    """What the safe unpickler builds for any class: its name and arguments, inert."""

    stand_in_module = ""
    stand_in_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        self = object.__new__(cls)
        self.__dict__["args"] = args
        self.__dict__["kwargs"] = kwargs
        self.__dict__["state"] = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEM(S) on a dict subclass
        pass

    def append(self, value: Any) -> None:  # APPEND(S) on a list subclass
        pass

    def extend(self, values: Any) -> None:
        pass

    @property
    def qualname(self) -> str:
        return f"{self.stand_in_module}.{self.stand_in_name}"

    def __repr__(self) -> str:
        args = ", ".join(_short(a) for a in self.__dict__["args"])
        return f"{self.stand_in_name}({args})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type[StandIn]:
        return type(
            str(name).rpartition(".")[2] or "object",
            (StandIn,),
            {"stand_in_module": str(module), "stand_in_name": str(name), "__slots__": ()},
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not accepted")


def safe_unpickle(data: bytes) -> Any:
    """Parse a pickle into plain values and ``StandIn`` objects; runs no code from it."""
    return _InertUnpickler(io.BytesIO(data)).load()


def _decode(data: bytes) -> dict[str, Any] | None:
    if data[:1] in (b"{", b" "):
        try:
            value = json.loads(data)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    try:
        value = safe_unpickle(data)
    except Exception:  # any malformed input: reported as unreadable, never raised
        return None
    return value if isinstance(value, dict) else None


def read(data: bytes) -> Outcome:
    """The outcome an arq result records, with a one-line reason when it failed."""
    if len(data) > MAX_RESULT_BYTES:
        return Outcome(False, f"result unreadable: {len(data)} bytes", 0)
    result = _decode(data)
    if result is None or "s" not in result:
        return Outcome(
            False, "result unreadable: neither JSON nor pickle (use either serializer)", 0
        )
    tries = result.get("t")
    tries = tries if isinstance(tries, int) and not isinstance(tries, bool) else 0
    if result["s"] is True:
        return Outcome(True, "", tries)
    return Outcome(False, _reason(result.get("r"), result), tries)


def _reason(error: Any, result: dict[str, Any]) -> str:
    if isinstance(error, StandIn):
        name = error.stand_in_name
        args = error.__dict__["args"]
        message = str(args[0]) if len(args) == 1 else ", ".join(map(str, args))
        if name == "DeserializationError":
            return (
                f"consumer failed: DeserializationError: {message} "
                "(the payload is JSON: set job_deserializer=json.loads)"
            )
        if name == "TimeoutError":
            return f"timed out after {_seconds(result)}"
        if name == "CancelledError":
            return "aborted"
        if name == "JobExecutionFailed":
            return _execution_failed(message)
        return f"handler raised {error!r}"[:1000]
    if isinstance(error, str):
        # A JSON result: ours keeps the exception's repr; plain json.dumps cannot
        # serialize an exception, so arq writes "unable to serialize result".
        if error.startswith("TimeoutError("):
            return f"timed out after {_seconds(result)}"
        if error.startswith("DeserializationError("):
            return f"consumer failed: {error}"
        if error.startswith("JobExecutionFailed("):
            inner = error[len("JobExecutionFailed(") : -1].strip("'\"")
            return _execution_failed(inner)
        return f"handler raised {error}"[:1000]
    return f"failed: {_short(error)}"[:1000]


def _execution_failed(message: str) -> str:
    if message.startswith("function ") and message.endswith(" not found"):
        return f"job function {message[len('function ') : -len(' not found')]} not found"
    return f"consumer failed: {message}"[:1000]


def _seconds(result: dict[str, Any]) -> str:
    start, finish = result.get("st"), result.get("ft")
    if isinstance(start, int) and isinstance(finish, int) and finish >= start:
        return f"{(finish - start) / 1000:.0f} s"
    return "its timeout"
