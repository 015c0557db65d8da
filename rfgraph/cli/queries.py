"""The design-query subcommands over `rfgraph.queries`: ``box``, ``sizes``, ``align``, ``lint``, ``time``, ``target``.

Each has a ``_add_<name>`` that builds its parser and a ``run_<name>`` that loads the model, asks
`rfgraph.queries` and prints the answer.  A `ValueError` from a query (a unit outside the node, a
target below the current RF, ...) is a bad command-line value: exit code 2.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any, Callable

from .load import default_input_shape, load
from .options import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    add_model_argument,
    add_shape_arguments,
    int_type,
    ints_type,
    resolve_shape,
)

__all__ = ["COMMANDS", "fmt"]


def fmt(v: Any) -> str:
    """A number as it reads best: integers plain, finite decimals exact, others to 6 digits; tuples ``AxB``.

    >>> from fractions import Fraction
    >>> fmt(Fraction(1, 2)), fmt(Fraction(1, 3)), fmt((Fraction(4), Fraction(4))), fmt(None)
    ('0.5', '0.333333', '4', '-')
    """
    # Fractions are recognised by their protocol: importing `fractions` (and `decimal`) would slow `--help`.
    if hasattr(v, "denominator") and not isinstance(v, (int, bool)):
        if v.denominator == 1:
            return str(v.numerator)
        den, places = v.denominator, 0
        while den % 10 == 0 or den % 2 == 0 or den % 5 == 0:
            den //= 2 if den % 2 == 0 else 5
            places += 1
            if den == 1:  # a finite decimal: print it exactly
                text = f"{v.numerator * 10 ** places // v.denominator}"
                sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
                text = text.rjust(places + 1, "0")
                return f"{sign}{text[:-places]}.{text[-places:]}".rstrip("0").rstrip(".")
        return f"{float(v):.6g}"
    if isinstance(v, tuple):
        vals = [fmt(x) for x in v]
        return vals[0] if len(set(vals)) == 1 else "x".join(vals)
    return "-" if v is None else str(v)


def _values_are_usage_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad values given on the command line become one-line usage errors (exit 2)."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from ..errors import RFGraphError  # deferred with the rest of the feature imports

        try:
            return fn(args)
        except RFGraphError:
            raise
        except ValueError as exc:
            raise CLIError(str(exc), EXIT_USAGE) from exc

    return run


def _shape(args: argparse.Namespace, model: Any) -> tuple[int, ...]:
    return resolve_shape(args.model, default_input_shape(args.model, model), args.input_shape, args.input_size)


def _load(args: argparse.Namespace) -> Any:
    from ..passes import analyze  # deferred: imports torch

    model = load(args.model)
    return analyze(model, _shape(args, model))


# -- box ------------------------------------------------------------------------------------------


def _add_box(sub: Any) -> None:
    p = sub.add_parser("box", help="input box seen by a unit; units that see an input pixel or box")
    add_model_argument(p)
    add_shape_arguments(p)
    p.add_argument("--node", required=True, help="node or module name, e.g. layer3")
    p.add_argument("--unit", metavar="U[,V]", type=ints_type("--unit", minimum=0),
                   help="unit index per axis, e.g. 5,7")
    p.add_argument("--pixel", metavar="Y,X", type=ints_type("--pixel", minimum=0),
                   help="input pixel Y,X or box Y0,Y1,X0,X1")
    p.set_defaults(run=run_box)


@_values_are_usage_errors
def run_box(args: argparse.Namespace) -> int:
    from ..queries import unit_box, units_seeing  # deferred: imports torch

    if args.unit is None and args.pixel is None:
        raise CLIError("give --unit U[,V] and/or --pixel Y,X (or --pixel Y0,Y1,X0,X1 for a box)", EXIT_USAGE)
    a = _load(args)
    r = a[args.node]
    if args.unit is not None:
        b = unit_box(a, args.node, args.unit if len(args.unit) > 1 else args.unit[0])
        print(f"node {b.node}  unit {b.unit}  input {b.input_size}")
        for k, ((lo, hi), c) in enumerate(zip(b.box, b.clipped)):
            clip = "only padding" if c is None else f"[{c[0]}, {c[1]}] ({c[1] - c[0] + 1} px)"
            print(f"  axis {k}: unclipped [{lo}, {hi}] ({hi - lo + 1} px)  clipped {clip}")
    if args.pixel is not None:
        where = args.pixel if len(args.pixel) == r.ndim else tuple(zip(args.pixel[::2], args.pixel[1::2]))
        runs = units_seeing(a, args.node, where)
        print(f"units of {r.name} that see {where}:")
        for k, rr in enumerate(runs):
            text = ", ".join(f"{x.start}..{x.stop - 1}" for x in rr) or "none"
            print(f"  axis {k}: {text}")
    return EXIT_OK


# -- sizes ----------------------------------------------------------------------------------------


def _add_sizes(sub: Any) -> None:
    p = sub.add_parser("sizes", help="minimal input size, evenly dividing sizes, coverage sizes")
    add_model_argument(p)
    add_shape_arguments(p)
    p.add_argument("--node", default=None, help="node for the coverage size (default: every stage)")
    p.set_defaults(run=run_sizes)


@_values_are_usage_errors
def run_sizes(args: argparse.Namespace) -> int:
    from ..queries import Resizer, coverage, first_covering, minimal_input_size, size_classes  # deferred: torch

    a = _load(args)
    rs = Resizer(a)
    print(f"model {args.model}  analysed at {a.input_shape}")
    print(f"minimal input size per axis: {minimal_input_size(a, resizer=rs)}")
    for kind, what in (("divisible", "every strided layer divides evenly"),
                       ("centered", "every feature grid is centred on the input")):
        sc = size_classes(a, kind, resizer=rs)
        ex = ", ".join(map(str, sc.examples(a.input_shape[2])))
        print(f"{what}: {sc}" + (f"  (e.g. {ex})" if ex else ""))
    nodes = [args.node] if args.node else [s.name for s in a.stages()]
    print("largest square input a node still sees whole (some unit / every unit):")
    for name in nodes:
        c = coverage(a, name, resizer=rs)
        print(f"  {c.node}: {fmt(c.some_unit)} / {fmt(c.every_unit)}")
    first = first_covering(a)
    print(f"first node whose RF covers the whole {tuple(a.input_shape[2:])} input: {first or 'none'}")
    return EXIT_OK


# -- align ----------------------------------------------------------------------------------------


def _add_align(sub: Any) -> None:
    p = sub.add_parser("align", help="alignment of every merge, causes, and sizes that align it")
    add_model_argument(p)
    add_shape_arguments(p)
    p.add_argument("--all", action="store_true", help="list aligned merges too")
    p.add_argument("--no-sizes", action="store_true", help="skip the search over input sizes")
    p.set_defaults(run=run_align)


@_values_are_usage_errors
def run_align(args: argparse.Namespace) -> int:
    from ..queries import alignment_report  # deferred: imports torch

    a = _load(args)
    reports = alignment_report(a, sizes=not args.no_sizes)  # every merge: the header counts them
    bad = [m for m in reports if not m.aligned]
    print(f"{args.model} at {a.input_shape}: {len(reports)} merges, {len(bad)} misaligned")
    for m in reports if args.all else bad:
        state = "aligned" if m.aligned else f"MISALIGNED by {fmt(m.max_center_shift)} px"
        print(f"{m.node} ({m.op}): {state}")
        for p in m.paths:
            print(f"    from {p.input}: stride {fmt(p.stride)}  centre(0) {fmt(p.center)}  shift {fmt(p.shift)}")
            for c in p.causes:
                print(f"        cause: {c}")
        if m.aligned_sizes is not None:
            print(f"    aligned for square inputs: {m.aligned_sizes}")
    return EXIT_OK


# -- lint -----------------------------------------------------------------------------------------


def _add_lint(sub: Any) -> None:
    p = sub.add_parser("lint", help="compare declared feature strides (timm, SSD) with computed ones")
    add_model_argument(p)
    add_shape_arguments(p)
    p.add_argument("--by-name", action="store_true",
                   help="timm: lint the plain model, resolving feature_info module names (default: build it with "
                   "features_only=True and match declared entry i with returned tensor i)")
    p.set_defaults(run=run_lint)


@_values_are_usage_errors
def run_lint(args: argparse.Namespace) -> int:
    from ..errors import RFGraphError
    from ..passes import analyze
    from ..queries import declared_strides, lint  # deferred: imports torch

    model = None
    if args.model.startswith("timm:") and not args.by_name:
        # features_only wrappers return one tensor per declared entry: no module names to resolve
        try:
            model = load(args.model, features_only=True)
        except RFGraphError:
            model = None
    if model is None:
        model = load(args.model)
    declared = declared_strides(model)
    if not declared:
        raise CLIError(f"{args.model}: declares no strides (no timm feature_info, no SSD steps)", EXIT_USAGE)
    target = model.backbone if any(d.node.startswith("backbone:") for d in declared) else model
    shape = _shape(args, model)
    if target is not model and not (args.input_shape or args.input_size):
        size = getattr(getattr(model, "transform", None), "min_size", (shape[-1],))[0]
        shape = (1, 3, size, size)
    rows = lint(analyze(target, shape), declared)
    bad = [r for r in rows if r.status == "mismatch"]
    unchecked = [r for r in rows if r.status == "unchecked"]
    print(f"{args.model} at {shape}: {len(rows)} declared strides, {len(bad)} mismatches"
          + (f", {len(unchecked)} unchecked" if unchecked else ""))
    for r in rows:
        mark = r.status.upper() if r.status != "ok" else "ok"
        extra = f"  ({r.error})" if r.error else ""
        print(f"  {mark:9} {r.label:28} {r.node:30} declared {fmt(r.declared):>4}  computed {fmt(r.computed):>4}{extra}")
    return EXIT_FAILED if bad or unchecked else EXIT_OK


# -- time -----------------------------------------------------------------------------------------


def _add_time(sub: Any) -> None:
    p = sub.add_parser("time", help="RF, stride, past and lookahead of a 1-D model in samples and ms")
    add_model_argument(p)
    add_shape_arguments(p)
    p.add_argument("--sample-rate", type=int_type("--sample-rate"), required=True,
                   help="samples per second, e.g. 16000")
    p.add_argument("--node", default=None)
    p.set_defaults(run=run_time)


@_values_are_usage_errors
def run_time(args: argparse.Namespace) -> int:
    from ..queries import time_summary  # deferred: imports torch

    a = _load(args)
    nodes = [args.node] if args.node else [r.name for r in a.records if r.is_spatial]
    print(f"{args.model} at {a.input_shape}, {args.sample_rate} Hz")
    print(f"{'node':32} {'rf':>8} {'rf ms':>10} {'stride':>7} {'stride ms':>10} {'past':>8} {'past ms':>9} "
          f"{'ahead':>8} {'ahead ms':>9} causal")
    for name in nodes:
        t = time_summary(a, name, args.sample_rate)
        print(f"{t.node:32} {t.rf:>8} {fmt(t.rf_ms):>10} {fmt(t.stride):>7} {fmt(t.stride_ms):>10} "
              f"{fmt(t.past):>8} {fmt(t.past_ms):>9} {fmt(t.lookahead):>8} {fmt(t.lookahead_ms):>9} "
              f"{'yes' if t.causal else 'no'}")
    return EXIT_OK


# -- target ---------------------------------------------------------------------------------------


def _add_target(sub: Any) -> None:
    p = sub.add_parser("target", help="distance to a target RF and the fewest layer changes reaching it")
    add_model_argument(p)
    add_shape_arguments(p)
    p.add_argument("--node", required=True)
    p.add_argument("--rf", type=int_type("--rf"), required=True, help="target RF (input pixels, axis 0)")
    p.add_argument("--show", type=int_type("--show"), default=4, help="how many verified alternatives to print")
    p.set_defaults(run=run_target)


@_values_are_usage_errors
def run_target(args: argparse.Namespace) -> int:
    from ..queries import target_rf  # deferred: imports torch

    a = _load(args)
    plan = target_rf(a, args.node, args.rf)
    print(f"{plan.node}: RF {plan.rf}, target {plan.target}")
    for name, rf, diff in plan.stages:
        print(f"  stage {name:30} RF {rf:>6}  {'+' if diff >= 0 else ''}{diff}")
    if plan.rf >= plan.target:
        print("target already reached")
        return EXIT_OK
    if not plan.solutions:
        print("no verified change set reaches the target")
        return EXIT_FAILED
    for changes, got in plan.solutions[: args.show]:
        text = "; ".join(f"{c.layer}: {c.what} {c.old} -> {c.new}" for c in changes)
        print(f"  {len(changes)} change(s): {text}  => RF {got}")
    if len(plan.solutions) > args.show:
        print(f"  ... {len(plan.solutions) - args.show} more verified alternatives (--show N)")
    print(f"assumes: {plan.assumptions}")
    return EXIT_OK


#: subcommand -> the function adding its parser (in the order `rfgraph --help` lists them)
COMMANDS = {"box": _add_box, "sizes": _add_sizes, "align": _add_align, "lint": _add_lint, "time": _add_time,
            "target": _add_target}

