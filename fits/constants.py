"""The constants file: versioned JSON, validated on write and on read.

``save(obj, path)`` validates then writes atomically (temp file, fsync, rename: a
failure never leaves a half-written file); ``load(path)`` reads and validates.  The
schema ships in the package (``fits/schema/constants.schema.json``).  Validation uses
``jsonschema`` when it is installed (the ``schema``/``test`` extras); otherwise a
built-in checker of the subset of JSON Schema that file uses (types, required keys,
const/enum, bounds, array lengths, ``$ref``, ``oneOf``, ``if/then/else``, property
names) applies the same rules.  :func:`validator_name` says which.
"""
from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "KIND", "SCHEMA_PATH", "ConstantsError", "load", "save",
           "validate", "schema", "validator_name", "topology", "headline", "headlines",
           "latency", "bandwidth", "format_headline", "joint_constants", "native_model",
           "native_identification",
           "predict_native", "predict_collective", "price"]

SCHEMA_VERSION = 1
KIND = "collcost-constants"
SCHEMA_PATH = Path(__file__).with_name("schema") / "constants.schema.json"


class ConstantsError(ValueError):
    """A constants object or file that does not follow the schema."""


@lru_cache(maxsize=1)
def schema() -> dict:
    """The JSON Schema of constants files (schema_version 1)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _jsonschema():
    try:
        import jsonschema
    except ImportError:
        return None
    return jsonschema


def validator_name() -> str:
    """``"jsonschema"`` or ``"built-in"``: which validator :func:`validate` uses."""
    return "jsonschema" if _jsonschema() is not None else "built-in"


# -- the built-in checker -------------------------------------------------------------

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value, name) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _resolve(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        raise ConstantsError(f"schema reference {ref!r} is not local")
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _errors(value, sch: dict, root: dict, where: str):
    """Yield messages for every rule of ``sch`` that ``value`` breaks."""
    if "$ref" in sch:
        yield from _errors(value, _resolve(sch["$ref"], root), root, where)
    if "if" in sch:
        branch = "then" if not any(_errors(value, sch["if"], root, where)) else "else"
        if branch in sch:
            yield from _errors(value, sch[branch], root, where)
    if "oneOf" in sch:
        ok = sum(1 for s in sch["oneOf"] if not any(_errors(value, s, root, where)))
        if ok != 1:
            yield f"{where}: matches {ok} of the allowed forms instead of exactly one"
            return
    if "type" in sch:
        names = sch["type"] if isinstance(sch["type"], list) else [sch["type"]]
        if not any(_is_type(value, n) for n in names):
            yield f"{where}: expected {' or '.join(names)}, got {type(value).__name__}"
            return
    if "const" in sch and value != sch["const"]:
        yield f"{where}: must be {sch['const']!r}, got {value!r}"
    if "enum" in sch and value not in sch["enum"]:
        yield f"{where}: must be one of {sch['enum']!r}, got {value!r}"
    if _is_type(value, "number"):
        if "minimum" in sch and value < sch["minimum"]:
            yield f"{where}: must be >= {sch['minimum']}, got {value!r}"
        if "exclusiveMinimum" in sch and value <= sch["exclusiveMinimum"]:
            yield f"{where}: must be > {sch['exclusiveMinimum']}, got {value!r}"
        if "exclusiveMaximum" in sch and value >= sch["exclusiveMaximum"]:
            yield f"{where}: must be < {sch['exclusiveMaximum']}, got {value!r}"
    if isinstance(value, list):
        if len(value) < sch.get("minItems", 0):
            yield f"{where}: needs at least {sch['minItems']} items, has {len(value)}"
        if "maxItems" in sch and len(value) > sch["maxItems"]:
            yield f"{where}: allows at most {sch['maxItems']} items, has {len(value)}"
        if "items" in sch:
            for i, item in enumerate(value):
                yield from _errors(item, sch["items"], root, f"{where}[{i}]")
    if isinstance(value, dict):
        for key in sch.get("required", ()):
            if key not in value:
                yield f"{where}: missing required key {key!r}"
        if len(value) < sch.get("minProperties", 0):
            yield f"{where}: needs at least {sch['minProperties']} entries"
        names = sch.get("propertyNames")
        props = sch.get("properties", {})
        extra = sch.get("additionalProperties")
        for key, item in value.items():
            if names is not None:
                if "enum" in names and key not in names["enum"]:
                    yield f"{where}: key {key!r} not one of {names['enum']!r}"
                if "pattern" in names and not re.search(names["pattern"], key):
                    yield f"{where}: key {key!r} does not match {names['pattern']!r}"
            if key in props:
                yield from _errors(item, props[key], root, f"{where}.{key}")
            elif isinstance(extra, dict):
                yield from _errors(item, extra, root, f"{where}.{key}")


def _non_finite(value, where: str):
    """Paths of NaN/inf numbers (JSON has none; jsonschema would let them through)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield f"{where}: must be a finite number, got {value!r}"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{where}[{i}]")


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def validate(obj) -> None:
    """Raise :class:`ConstantsError` (naming the first problems) unless ``obj`` is valid."""
    if not isinstance(obj, dict):
        raise ConstantsError(f"a constants object must be a JSON object, got "
                             f"{type(obj).__name__}")
    if obj.get("kind") != KIND:
        raise ConstantsError(f"not a collcost constants file (kind is {obj.get('kind')!r},"
                             f" expected {KIND!r})")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConstantsError(f"unknown schema_version {version!r}; this collcost reads "
                             f"schema_version {SCHEMA_VERSION} only")
    js = _jsonschema()
    messages = list(_non_finite(obj, "(top)"))
    if not messages and js is not None:
        validator = js.Draft202012Validator(schema())
        problems = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        leaves = [js.exceptions.best_match(e.context) if e.context else e
                  for e in problems]
        messages = [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: "
                    f"{_shorten(e.message)}" for e in leaves]
    elif not messages:
        messages = list(_errors(obj, schema(), schema(), "(top)"))
    if messages:
        more = f" (and {len(messages) - 5} more)" if len(messages) > 5 else ""
        raise ConstantsError("constants do not follow the schema: "
                             + "; ".join(messages[:5]) + more)


def save(obj: dict, path) -> Path:
    """Validate ``obj`` and write it to ``path`` atomically (nothing written if invalid)."""
    from collectives.files import atomic_write_text

    validate(obj)
    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
    path = Path(path)
    if not path.parent.is_dir():
        raise ConstantsError(f"cannot write {path}: directory {path.parent} does not exist")
    atomic_write_text(path, text)
    return path


def load(path) -> dict:
    """Read and validate a constants file; :class:`ConstantsError` says what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConstantsError(f"cannot read constants file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConstantsError(f"{path}: not a constants file (not UTF-8 text: byte "
                             f"{exc.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConstantsError(f"{path}: not valid JSON ({exc})") from None
    try:
        validate(obj)
    except ConstantsError as exc:
        raise ConstantsError(f"{path}: {exc}") from None
    return obj


# -- readers: what other modules take from a constants object -------------------------

def topology(doc: dict, name: str) -> dict:
    """``doc["topologies"][name]``, or :class:`ConstantsError` naming those present."""
    topologies = (doc or {}).get("topologies") or {}
    if name not in topologies:
        raise ConstantsError(f"topology {name!r} is not in the constants (present: "
                             f"{', '.join(topologies) or 'none'})")
    return topologies[name]


def headline(doc: dict, topology_name: str):
    """The headline of a topology: ``{"latency": {...}, "bandwidth": {...}}`` or None.

    ``latency["value"]`` is seconds (the small-message intercept of the ping-pong),
    ``bandwidth["value"]`` bytes per second (``1/β`` of its large-message regime); each
    has ``ci`` ([low, high], an end may be None), ``status`` (``identified``,
    ``at_bound`` or ``not_identified``: use only ``identified`` values as facts),
    ``bytes_range``, ``ranks`` and ``note``.  None when the topology has no ping-pong
    (or the file predates headlines).  Unknown topology: :class:`ConstantsError`.
    """
    return topology(doc, topology_name).get("headline")


def headlines(doc: dict) -> dict:
    """``{topology: headline or None}`` for every topology of ``doc``."""
    return {name: headline(doc, name) for name in (doc or {}).get("topologies") or {}}


def latency(doc: dict, topology_name: str):
    """The headline latency entry (value in s) of a topology, or None."""
    h = headline(doc, topology_name)
    return None if h is None else h["latency"]


def bandwidth(doc: dict, topology_name: str):
    """The headline bandwidth entry (value in B/s) of a topology, or None."""
    h = headline(doc, topology_name)
    return None if h is None else h["bandwidth"]


def _fmt_interval(ci, factor, digits=3):
    if not ci:
        return "no interval"
    ends = ["-inf" if ci[0] is None and i == 0 else "inf" if ci[i] is None else
            f"{ci[i] * factor:.{digits}g}" for i in (0, 1)]
    return f"[{ends[0]}, {ends[1]}]"


def _fmt_bytes(n):
    n = int(n)
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def format_headline(doc: dict, topology_name: str) -> str:
    """One line: ``intra: latency 2.17 µs [1.95, 2.36] identified (8 B-4 KiB, p=2) ·
    bandwidth 7.88 GB/s [...] identified (8 B-8 MiB, p=2)``."""
    h = headline(doc, topology_name)
    if h is None:
        return f"{topology_name}: no ping-pong measured: no latency or bandwidth headline"
    parts = []
    bw = h["bandwidth"].get("value")
    bw_unit = (1e-9, "GB/s") if bw is None or bw >= 1e9 else (1e-6, "MB/s")
    for key, factor, unit in (("latency", 1e6, "µs"), ("bandwidth",) + bw_unit):
        e = h[key]
        where = (f"{_fmt_bytes(e['bytes_range'][0])}-{_fmt_bytes(e['bytes_range'][1])}, "
                 f"p={','.join(map(str, e['ranks']))}")
        if e["value"] is None:  # say why rather than a range no value came from
            why = str(e.get("note") or "no value").rsplit("; ", 1)[-1]
            parts.append(f"{key} - {e['status']} ({why})")
            continue
        value = f"{e['value'] * factor:.3g} {unit}"
        parts.append(f"{key} {value} {_fmt_interval(e.get('ci'), factor, 4)} "
                     f"{e['status']} ({where})")
    return f"{topology_name}: " + " · ".join(parts)


# -- prediction from the joint constants and the identified native models -------------

def joint_constants(doc: dict, topology_name: str):
    """The topology's joint fit (:mod:`fits.joint`: regimes of α, β, γ segments, software
    costs, errors) or None (no ping-pong and no registry algorithm, or an old file)."""
    return topology(doc, topology_name).get("joint")


def native_identification(doc: dict, topology_name: str, collective: str):
    """The identification result of the library's ``collective`` (:mod:`fits.native`),
    whatever its ``status``, or None when the native collective was not measured."""
    algos = topology(doc, topology_name).get("algorithms") or {}
    return ((algos.get(collective) or {}).get("native") or {}).get("identified")


def native_model(doc: dict, topology_name: str, collective: str):
    """The identified model of the library's ``collective`` (:mod:`fits.native`): per
    size segment the registry algorithm, its BIC weight, equivalents and the per-call
    cost; None when the native collective was not measured or its ``status`` is
    ``not_identified`` (one rank count, or no registry algorithm explains it well
    enough: :func:`fits.native.adequacy`).  Files without ``status`` predate the check
    and count as identified."""
    ident = native_identification(doc, topology_name, collective)
    if not ident or not ident.get("segments"):
        return None
    return None if ident.get("status") == "not_identified" else ident


def _native_per_ranks(doc, topology_name, collective):
    algos = topology(doc, topology_name).get("algorithms") or {}
    native_entry = (algos.get(collective) or {}).get("native") or {}
    return native_entry.get("per_ranks") or {}


def _per_ranks_time(per_ranks, ranks, nbytes):
    """Seconds from the native collective's own Hockney fit at each measured rank count."""
    import numpy as np

    from collectives import costs

    from . import segments

    p, n = np.broadcast_arrays(np.asarray(ranks), np.asarray(nbytes, dtype=float))
    out = np.empty(n.shape)
    for key in np.unique(p):
        fit = per_ranks[str(int(key))]
        sel = p == key
        seg = segments.assign(n[sel], fit.get("breakpoints") or [])
        part = np.empty(int(sel.sum()))
        for i, s in enumerate(fit["segments"]):
            on = seg == i
            part[on] = costs.hockney(n[sel][on], s.get("alpha") or 0.0,
                                     s.get("beta") or 0.0)
        out[sel] = part
    return out


def _unidentified_native(doc, topology_name, collective, ranks):
    """``(per_ranks, reason)`` when the native collective was measured but not
    identified and every requested rank count was measured; :class:`ConstantsError`
    when it asks for other rank counts (no extrapolation without an identified shape).
    ``None`` when the native collective was not measured at all."""
    import numpy as np

    ident = native_identification(doc, topology_name, collective)
    per_ranks = _native_per_ranks(doc, topology_name, collective)
    if ident is None or not per_ranks:
        return None
    reason = ident.get("reason") or "not identified"
    asked = sorted({int(p) for p in np.ravel(np.asarray(ranks))})
    missing = [p for p in asked if str(p) not in per_ranks]
    if missing:
        raise ConstantsError(
            f"{topology_name}: the native {collective} is not identified ({reason}); it "
            f"can be priced only at its measured rank counts "
            f"p={','.join(sorted(per_ranks, key=int))}, not at "
            f"p={','.join(map(str, missing))} (measure it at more rank counts, then "
            "refit)")
    return per_ranks, reason


def predict_native(doc: dict, topology_name: str, collective: str, ranks, nbytes):
    """Seconds of the MPI library's own ``collective`` at any (ranks, bytes), measured
    or not: the identified registry algorithm of each size segment priced with the
    topology's joint constants plus the library's per-call cost.

    When the native collective was measured but is ``not_identified`` (one rank count;
    no registry algorithm explains it), only its measured rank counts are priced, from
    its own per-rank-count Hockney fit; other rank counts raise :class:`ConstantsError`
    naming the reason.  Also :class:`ConstantsError` when the topology has no joint
    constants or the native collective was not measured.
    """
    from . import native

    joint = joint_constants(doc, topology_name)
    model = native_model(doc, topology_name, collective)
    if joint is None or model is None:
        fallback = _unidentified_native(doc, topology_name, collective, ranks)
        if fallback is not None:
            return _per_ranks_time(fallback[0], ranks, nbytes)
        raise ConstantsError(f"{topology_name}: no identified model of the native "
                             f"{collective} (measure it with --algorithms native and "
                             "the ping-pong, then refit)")
    return native.predict(model, joint, collective, ranks, nbytes)


def predict_collective(doc: dict, topology_name: str, collective: str, algorithm: str,
                       ranks, nbytes, *, implementation=None):
    """Seconds of a registry ``algorithm`` from the topology's joint constants.

    ``implementation=None`` prices network and kernel only (an efficient
    implementation); ``"python"`` adds the fitted cost of our hand-written steps.
    ``algorithm="native"`` is :func:`predict_native`.
    """
    from . import joint

    if algorithm == "native":
        return predict_native(doc, topology_name, collective, ranks, nbytes)
    j = joint_constants(doc, topology_name)
    if j is None:
        raise ConstantsError(f"{topology_name}: no joint constants (old file or no "
                             "ping-pong/algorithm points)")
    return joint.predict(j, collective, algorithm, ranks, nbytes,
                         implementation=implementation)


def price(doc: dict, topology_name: str, collective: str, ranks, nbytes):
    """What a planner asks: the library's collective if it was identified, else the
    cheapest registry algorithm on the joint constants.  Returns ``(seconds, model)``,
    ``model`` a short text saying what priced it (for the predictor's output).

    A native collective that was measured but is ``not_identified``
    (:func:`fits.native.adequacy`) is priced at its measured rank counts from its own
    per-rank-count fit (the text says so and why); at other rank counts
    :class:`ConstantsError` (no extrapolation, and no silent switch to another model).
    """
    import numpy as np

    from collectives import costs

    model = native_model(doc, topology_name, collective)
    if model is not None and joint_constants(doc, topology_name) is not None:
        names = ", ".join(f"{s['algorithm']} {s['min_bytes']}-{s['max_bytes']} B"
                          for s in model["segments"])
        return (predict_native(doc, topology_name, collective, ranks, nbytes),
                f"native {collective} identified as {names} (joint constants + "
                "library per-call cost)")
    fallback = _unidentified_native(doc, topology_name, collective, ranks)
    if fallback is not None:
        per_ranks, reason = fallback
        asked = sorted({int(p) for p in np.ravel(np.asarray(ranks))})
        return (_per_ranks_time(per_ranks, ranks, nbytes),
                f"native {collective} from its own fit at the measured "
                f"p={','.join(map(str, asked))} (not identified: {reason}; no "
                "extrapolation in p)")
    times = {a: predict_collective(doc, topology_name, collective, a, ranks, nbytes)
             for a in costs.algorithms(collective, native=False)}
    best = min(times, key=lambda a: float(np.sum(times[a])))
    return times[best], (f"{collective}/{best} on the joint constants (no native model; "
                         "network and kernel only)")
