"""The abstract tensor that flows through the symbolic pass.

A `SymTensor` knows its shape and dtype, and for each tensor dimension which
input spatial axes it carries, with the receptive `Field` of each.  A dimension
is tagged by one of:

* ``Axis(k, field)``: an ordinary spatial dimension carrying input axis ``k``;
  index ``u`` along it sees input coordinates ``[field.lo(u), field.hi(u)]``.
* ``Flat(parts)``: contiguous dimensions flattened into one (ViT tokens =
  ``H * W``); ``parts`` keeps each part's size and tag so that a reshape back
  restores them exactly.  Window ops cannot read a flattened dimension.
* ``Mixed(items)``: a dimension whose positions no longer map regularly to
  input coordinates (a flattened dimension after a concat with a class token,
  a split of a spatial dimension).  It still carries the axes' fields, which
  bound every position, but no window op may read it.

Axes that no dimension carries any more (reduced by a mean, indexed by an
integer) are kept in ``pinned``.  ``unknown`` holds the reason when some op
upstream had no rule: such a tensor's numbers are never reported.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, replace
from fractions import Fraction
from math import gcd, lcm, prod
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from .algebra import GLOBAL, Field, FiniteMap, Map, PAMap, SlopeMismatch
from .errors import RuleError
from .locking import serialized

__all__ = ["collect", "shape_by_execution", "clear_merge_caches", "Axis", "Sub", "Flat", "Cat", "Mixed", "Offsets", "Tag", "is_complete", "is_mixable", "SymTensor", "MergeInfo", "merge_tensors"]


def collect(value: Any, kind: type) -> list:
    """Every instance of ``kind`` in ``value``, looking inside lists, tuples and dicts, in order."""
    if isinstance(value, kind):
        return [value]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in collect(v, kind)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in collect(v, kind)]
    return []


@serialized
def shape_by_execution(fn: Callable, args: tuple, kwargs: dict, device: torch.device) -> Any:
    """Run ``fn`` on data-free stand-ins of the `SymTensor` arguments; return the results' stand-ins.

    Meta tensors when the model lives on the meta device; otherwise fake CPU
    tensors, so that no activation memory is used in either case.  Nothing the
    model owns is touched: a module ``fn`` runs as a copy whose parameters and
    buffers are data-free stand-ins too, and constant tensor arguments are
    replaced by stand-ins (an in-place op in ``forward``, ``self.step.add_(1)``,
    would otherwise change the model: ``FakeTensorMode`` runs in-place ops on
    real tensors for real).
    """

    def to_tensor(v, mode=None):
        if isinstance(v, SymTensor):
            return torch.empty(v.shape, dtype=v.dtype, device=device if device.type == "meta" else "cpu")
        if isinstance(v, torch.Tensor):
            return v.to("meta") if mode is None else mode.from_tensor(v)
        if isinstance(v, (list, tuple)):
            items = [to_tensor(x, mode) for x in v]
            return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
        if isinstance(v, dict):
            return {k: to_tensor(x, mode) for k, x in v.items()}
        return v

    if device.type == "meta":
        return _stand_in_module(fn, None)(*to_tensor(args), **to_tensor(kwargs))
    try:
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        with mode:
            return _stand_in_module(fn, mode)(*to_tensor(args, mode), **to_tensor(kwargs, mode))
    except Exception:
        # Data-dependent code (``if x.sum() > 0``) cannot run on fake tensors: run it on zeros, with copies.
        sizes = [prod(v.shape) for v in _sym_leaves((args, kwargs))]
        if sum(sizes) > REAL_RUN_LIMIT:
            raise RuleError(
                f"learning the output shape needs a real run on {sum(sizes)} input elements "
                f"(more than {REAL_RUN_LIMIT}); use a smaller input or give the op a rule"
            ) from None
        with torch.no_grad():
            real_args = _map_sym(args, lambda v: torch.zeros(v.shape, dtype=v.dtype))
            real_kwargs = _map_sym(kwargs, lambda v: torch.zeros(v.shape, dtype=v.dtype))
            real_fn = copy.deepcopy(fn) if isinstance(fn, torch.nn.Module) else fn
            return real_fn(*_clone_tensors(real_args), **_clone_tensors(real_kwargs))


#: Largest number of input elements `shape_by_execution` runs for real (data-dependent ops).
REAL_RUN_LIMIT = 1 << 26


def _stand_in_module(fn: Callable, mode: Any) -> Callable:
    """``fn`` itself, or for a module with state a copy holding meta (``mode is None``) or fake stand-ins."""
    if not isinstance(fn, torch.nn.Module):
        return fn
    memo: dict[int, Any] = {}
    for p in fn.parameters():
        stand = p.detach().to("meta") if mode is None else mode.from_tensor(p.detach())
        memo[id(p)] = torch.nn.Parameter(stand, requires_grad=p.requires_grad)
    for b in fn.buffers():
        memo[id(b)] = b.to("meta") if mode is None else mode.from_tensor(b)
    return copy.deepcopy(fn, memo)


def _sym_leaves(value: Any) -> list:
    return collect(value, SymTensor)


def _clone_tensors(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        items = [_clone_tensors(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {k: _clone_tensors(v) for k, v in value.items()}
    return value


def _map_sym(value: Any, fn: Callable) -> Any:
    if isinstance(value, SymTensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        items = [_map_sym(v, fn) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {k: _map_sym(v, fn) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Axis:
    """A dim holding the whole of input axis ``axis`` in natural order: index ``u`` sees ``field(u)``."""

    axis: int
    field: Field

    def items(self) -> tuple[tuple[int, Field], ...]:
        return ((self.axis, self.field),)


@dataclass(frozen=True)
class Sub:
    """One digit of input axis ``axis``, which has length ``n`` (a sub-axis of a token layout).

    The storage index ``q`` of the axis is the mixed-radix number formed by its
    digits (``q = sum(digit * stride)``); it holds position ``p = q + shift
    (mod n)`` of the axis, at which ``field`` is read.  A window partition
    ``view(B, n/ws, ws, ...)`` of a dim of length ``n`` gives an outer digit
    ``Sub(stride=ws, size=n/ws)`` and an inner one ``Sub(stride=1, size=ws)``;
    ``roll`` changes ``shift``.  The whole axis in one digit (``stride 1,
    size n``) with ``shift == 0`` is an `Axis`.  All digits of one axis in a
    tensor share ``field``, ``n`` and ``shift``.  Digits of an axis that no dim
    holds any more (contracted by a mix) are ones over which the field is
    constant.
    """

    axis: int
    field: Field
    n: int
    stride: int
    size: int
    shift: int = 0

    def items(self) -> tuple[tuple[int, Field], ...]:
        return ((self.axis, self.field),)


@dataclass(frozen=True)
class Flat:
    """A dim holding the product of ``parts`` (``(size, leaf tag or None)``, most significant first):
    ViT tokens are ``Flat(((H, Axis(0)), (W, Axis(1))))``; a reshape back restores the parts exactly."""

    parts: tuple[tuple[int, Optional["Tag"]], ...]

    def items(self) -> tuple[tuple[int, Field], ...]:
        return tuple(item for _, tag in self.parts if tag is not None for item in tag.items())


@dataclass(frozen=True)
class Cat:
    """A dim made of ``segments`` (``(length, tag or None)``) concatenated: a class token in front of
    flattened tokens.  Slicing a segment back out restores its tag; mixing the dim joins them all."""

    segments: tuple[tuple[int, Optional["Tag"]], ...]

    def items(self) -> tuple[tuple[int, Field], ...]:
        return tuple(item for _, tag in self.segments if tag is not None for item in tag.items())


@dataclass(frozen=True)
class Mixed:
    """Positions that no longer map regularly to input coordinates; ``pairs`` bound every position."""

    pairs: tuple[tuple[int, Field], ...]
    #: True when mixing the dim mixes every position of its axes (a summary position such as a class
    #: token after attention); False for an irregular split, where mixing it is refused.
    complete: bool = True

    def items(self) -> tuple[tuple[int, Field], ...]:
        return self.pairs


@dataclass(frozen=True)
class Offsets:
    """The offsets ``k`` of overlapping windows (``Tensor.unfold`` / ``F.unfold`` with a step other than the
    window): element ``(.., u, .., k)`` reads position ``step*u + k`` of input axis ``axis``, one member of
    the window whose union the dim of ``u`` holds (an `Axis` with the window's field).  The dim holds no
    field of its own: ops that treat it as a whole (elementwise, mixing or reducing it, permutes,
    reshapes keeping it) are exact with the union; an op that reads part of it (an index, a slice, a
    window along it, a fold) has no exact rule and gives ``unknown``."""

    axis: int

    def items(self) -> tuple[tuple[int, Field], ...]:
        return ()


Tag = Union[Axis, Sub, Flat, Cat, Mixed, Offsets]


def _has_offsets(tag: Optional[Tag]) -> bool:
    return any(isinstance(leaf, Offsets) for leaf in _leaves(tag))


def _drop_offsets(size: int, tag: Optional[Tag]) -> Optional[Tag]:
    """``tag`` with its `Offsets` gone (every element of the dim now reads the whole window)."""
    if not _has_offsets(tag):
        return tag
    if isinstance(tag, Offsets):
        return None
    parts = tuple((s, _drop_offsets(s, t)) for s, t in (tag.parts if isinstance(tag, Flat) else tag.segments))
    if all(t is None for _, t in parts):
        return None
    return Flat(parts) if isinstance(tag, Flat) else Cat(parts)


def is_complete(tag: Optional[Tag]) -> bool:
    """Whether mixing along a dim with this tag alone mixes every position of its axes."""
    if isinstance(tag, Mixed):
        return tag.complete
    if isinstance(tag, Sub):
        return tag.stride == 1 and tag.size == tag.n
    if isinstance(tag, Flat):
        return all(is_complete(t) for _, t in tag.parts)
    if isinstance(tag, Cat):
        return all(is_complete(t) for _, t in tag.segments)
    return True


def is_mixable(tag: Optional[Tag]) -> bool:
    """Whether mixing along a dim with this tag alone has an exact answer with every position of its
    axes: the dim holds every position of its axes, or every position it holds already depends on the
    whole of them (a subset of global positions mixes to global).  (`SymTensor.mix` also handles the
    dims holding part of an axis: windows, grids.)"""
    return is_complete(tag) or all(f.is_global for _, f in tag.items())


def _replace_fields(tag: Optional[Tag], fn: Callable[[Any], Any]) -> Optional[Tag]:
    """``tag`` with every leaf (`Axis`, `Sub`, `Mixed`) replaced by ``fn(leaf)``."""
    if tag is None:
        return None
    if isinstance(tag, Flat):
        return Flat(tuple((s, _replace_fields(t, fn)) for s, t in tag.parts))
    if isinstance(tag, Cat):
        return Cat(tuple((s, _replace_fields(t, fn)) for s, t in tag.segments))
    return fn(tag)


def _replace_sized(size: int, tag: Optional[Tag], fn: Callable[[int, Any], Any]) -> Optional[Tag]:
    """``tag`` (of a dim of ``size`` positions) with every leaf replaced by ``fn(leaf_size, leaf)``."""
    if tag is None:
        return None
    if isinstance(tag, Flat):
        return Flat(tuple((s, _replace_sized(s, t, fn)) for s, t in tag.parts))
    if isinstance(tag, Cat):
        return Cat(tuple((s, _replace_sized(s, t, fn)) for s, t in tag.segments))
    return fn(size, tag)


def _leaves(tag: Optional[Tag]) -> list:
    if tag is None:
        return []
    if isinstance(tag, Flat):
        return [leaf for _, t in tag.parts for leaf in _leaves(t)]
    if isinstance(tag, Cat):
        return [leaf for _, t in tag.segments for leaf in _leaves(t)]
    return [tag]


def _digit(leaf: Any, size: int) -> Optional[tuple[int, int, int, int]]:
    """``(stride, size, n, shift)`` of a leaf held in a part of ``size`` positions."""
    if isinstance(leaf, Sub):
        return leaf.stride, leaf.size, leaf.n, leaf.shift
    if isinstance(leaf, Axis):
        return 1, size, size, 0
    return None


def _sized_leaves(size: int, tag: Optional[Tag]) -> list[tuple[int, Any]]:
    """``(size, leaf)`` of every leaf of a dim of ``size`` positions."""
    if tag is None:
        return []
    if isinstance(tag, Flat):
        return [x for s, t in tag.parts for x in _sized_leaves(s, t)]
    if isinstance(tag, Cat):
        return [x for s, t in tag.segments for x in _sized_leaves(s, t)]
    return [(size, tag)]


_CONST0 = PAMap.constant(0)
_IDENTITY = PAMap.identity()


class SymTensor:
    """Shape, dtype and receptive fields of one tensor in the symbolic pass: what rules receive and return.

    ``shape`` and ``dtype`` are those of the real tensor.  ``tags[d]`` says which
    input spatial axes tensor dim ``d`` carries (``None``: a channel or batch
    dim), with the receptive `Field` of each position; ``pinned`` holds the
    fields of axes no dim carries any more (after a mean, an integer index).
    ``unknown`` is the reason when some op upstream had no exact rule (then no
    number is reported), ``global_context`` marks a global path that scales a
    local one (squeeze-and-excitation), ``probed`` a field measured by the probe.

    Rules build their result from their input with the methods below, which
    never modify ``self``:

    >>> from rfgraph.algebra import PAMap
    >>> x = SymTensor.input((1, 3, 8, 8))                  # (N, C, H, W): H, W carry axes 0, 1
    >>> y = x.window(2, PAMap.affine(2, -1), PAMap.affine(2, 1), 4, "my conv")   # k=3, s=2, p=1 along H
    >>> y.shape, y.tags[2].field.rf, y.tags[2].field.stride
    ((1, 3, 4, 8), 3, Fraction(2, 1))
    >>> z = y.reduce([3], keepdim=False)                   # a mean over W: axis 1 becomes global
    >>> z.shape, z.pinned[1].is_global
    ((1, 3, 4), True)
    """

    __slots__ = ("shape", "dtype", "tags", "pinned", "unknown", "global_context", "probed", "parts")

    def __init__(
        self,
        shape: Sequence[int],
        dtype: torch.dtype = torch.float32,
        tags: Optional[Sequence[Optional[Tag]]] = None,
        pinned: Optional[dict[int, Field]] = None,
        unknown: Optional[str] = None,
        global_context: bool = False,
        probed: bool = False,
    ):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.tags: tuple[Optional[Tag], ...] = tuple(tags) if tags is not None else (None,) * len(self.shape)
        if len(self.tags) != len(self.shape):
            raise ValueError(f"{len(self.tags)} tags for shape {self.shape}")
        self.pinned: dict[int, Field] = dict(pinned or {})
        self.unknown = unknown
        self.global_context = global_context
        self.probed = probed
        #: After a concat along a non-spatial dim: ``(dim, ((start, stop, operand), ...))``.
        #: Channels keep their own fields there, so slicing one operand's range back
        #: out (split / chunk / getitem) recovers its exact field instead of the union.
        #: The concat itself, ops returning their input unchanged and ops moving the dim without mixing
        #: its channels carry it (docs/design.md, "Concat pieces").
        self.parts: Optional[tuple[int, tuple[tuple[int, int, SymTensor], ...]]] = None

    @classmethod
    def input(cls, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> SymTensor:
        """A model input ``(N, C, *spatial)``: spatial dim ``2 + k`` carries axis ``k``."""
        tags = [None, None] + [Axis(k, Field.identity()) for k in range(len(shape) - 2)]
        return cls(shape, dtype, tags)

    # -- derived views -------------------------------------------------------

    @property
    def ndim(self) -> int:
        """Number of dims."""
        return len(self.shape)

    def like(self, shape=None, tags=None, dtype=None, pinned=None) -> SymTensor:
        """A new tensor with this one's flags and the given shape / tags."""
        return SymTensor(
            self.shape if shape is None else shape,
            self.dtype if dtype is None else dtype,
            self.tags if tags is None else tags,
            self.pinned if pinned is None else pinned,
            self.unknown,
            self.global_context,
            self.probed,
        )

    def as_unknown(self, reason: str, shape=None, dtype=None) -> SymTensor:
        """A tensor with no known fields (``reason`` says why; an upstream reason is kept first)."""
        out = SymTensor(self.shape if shape is None else shape, self.dtype if dtype is None else dtype)
        out.unknown = self.unknown or reason
        return out

    @property
    def is_constant(self) -> bool:
        """Reads no input position: no field anywhere, nothing unknown (a shape-derived constant such as
        ``zeros_like(x)``, or another input of a model with several)."""
        return (not self.unknown and not self.pinned and not self.global_context and not self.probed
                and all(tag is None or not tag.items() for tag in self.tags))

    def axis_fields(self) -> dict[int, list[Field]]:
        """Every field this tensor holds, grouped by input axis.

        An axis held as digits (`Sub`) is reported by its positions in storage
        order: rolled back by its shift, and without the lowest digits when a
        reduction dropped them (Swin's patch merging: a dim of ``n / 2``
        positions, stride doubled).
        """
        return {k: [f for _, f, _ in fs] for k, fs in self._axis_copies().items()}

    def _axis_copies(self) -> dict[int, list[tuple[Optional[tuple], Field, Optional[int]]]]:
        """`axis_fields` with, for each field, the copy of the axis it indexes: ``("sub", n, shift,
        length)`` for digits (``length`` positions reported), ``("axis", length)`` for a whole axis in
        a part of ``length`` positions, ``None`` for fields that bound every position (pinned, `Mixed`);
        and the tensor dim holding it (None for pinned fields)."""
        out: dict[int, list[tuple[Optional[tuple], Field, Optional[int]]]] = {}
        layouts = _axis_layouts(self)
        first_sub: dict[int, tuple] = {}
        for d, (size, tag) in enumerate(zip(self.shape, self.tags)):
            for part, leaf in _sized_leaves(size, tag):
                if isinstance(leaf, Sub):
                    key = (leaf.axis, leaf.n, leaf.shift)
                    first_sub.setdefault(leaf.axis, key)
                    step = min((st for st, _ in layouts.get(key, ())), default=1)
                    out.setdefault(leaf.axis, []).append(
                        (("sub", leaf.n, leaf.shift, leaf.n // step), _held_field(leaf.field, leaf.n, leaf.shift, step), d))
                elif isinstance(leaf, Axis):
                    out.setdefault(leaf.axis, []).append((("axis", part), leaf.field, d))
                else:
                    for k, f in leaf.items():
                        out.setdefault(k, []).append((None, f, d))
        for k, f in self.pinned.items():
            if k in first_sub:
                _, n, shift = key = first_sub[k]
                f = _held_field(f, n, shift, min((st for st, _ in layouts.get(key, ())), default=1))
            out.setdefault(k, []).append((None, f, None))
        return out

    def record_fields(self) -> dict[int, Field]:
        """One field per input axis for the node's record: the union of the fields it holds.

        Fields indexing the same positions merge position by position.  Another copy of the axis
        in another dim (gcvit's queries from the global map beside the windows' keys, before the
        window reverse pairs them) has no index in common with the first: every position of the
        first copy is paired with all of them, so that copy contributes its hull over all its
        positions (exact for "the elements at index ``u`` of the first copy").  Other positions in
        the *same* dim (concatenated segments: YOLO's head joins its flattened pyramid levels) are
        other elements, not paired ones: they merge index by index, which only makes sense when
        their slopes agree.  Raises `SlopeMismatch` when fields cannot merge that way."""
        out: dict[int, Field] = {}
        spread = self._digits_in_channels()
        for k, fs in self._axis_copies().items():
            if k in spread:
                fs = _block_copies(self, fs, *spread[k])
            primary, primary_dim = next(((key, d) for key, _, d in fs if key is not None), (None, None))
            length = primary[-1] if primary is not None else None
            same = [f for key, f, _ in fs if key is None or key == primary]
            beside = [f for key, f, d in fs if key is not None and key != primary and d == primary_dim]
            others = [f if f.is_global else f.through(_CONST0, PAMap.constant(key[-1] - 1))  # hull of the copy
                      for key, f, d in fs if key is not None and key != primary and d != primary_dim]
            field = same[0]
            for f in same[1:]:
                # (different slopes: an exact table; HaloNet with one block pins a constant window beside
                # the queries' own fields)
                field = field.merge(f, size=length)
            for f in beside:
                if not (_periodic(field) and _periodic(f)):
                    # a finite table indexes its own segment's positions only: another segment's units
                    # are not its units
                    raise SlopeMismatch("segments of one dim hold positions on different grids (a finite map)")
                field = field.merge(f)  # (no length: different slopes raise SlopeMismatch)
            for f in others:
                field = field.merge(f, size=length)
            out[k] = field
        return out

    def axis_dims(self) -> dict[int, int]:
        """Tensor dim carrying each input axis (the first one, if several do)."""
        out: dict[int, int] = {k: d for k, (d, _) in self._digits_in_channels().items()}
        for d, tag in enumerate(self.tags):
            if tag is not None:
                for k, _ in tag.items():
                    out.setdefault(k, d)
        return out

    def _digits_in_channels(self) -> dict[int, tuple[int, Sub]]:
        """Input axes held as space-to-depth holds them: the top digit first in a dim (followed there by
        positions holding no axis, or lower digits of other axes), every lower digit in dims that hold other things too (the
        channels: ``pixel_unshuffle`` written as ``view`` / ``permute`` / ``reshape``, TResNet's
        ``SpaceToDepth``).  The node convention (a node's field is the union over its non-spatial dims)
        then reports the top digit's dim by its own units, each the union over its block of the axis,
        as for ``pixel_unshuffle``.  Windows (digits alone in their dims, or top digits sharing a dim
        with other axes) stay reported by axis position.  ``axis -> (dim of the top digit, its leaf)``."""
        tops: dict[tuple, tuple[int, Sub]] = {}
        lower_in_channels: dict[tuple, bool] = {}
        for d, (size, tag) in enumerate(zip(self.shape, self.tags)):
            if isinstance(tag, Cat):
                for leaf in _leaves(tag):
                    if isinstance(leaf, Sub):
                        lower_in_channels[(leaf.axis, leaf.n, leaf.shift)] = False
                continue
            parts = tag.parts if isinstance(tag, Flat) else ((size, tag),)
            for i, (part, leaf) in enumerate(parts):
                if not isinstance(leaf, Sub) or part <= 1:
                    continue
                key = (leaf.axis, leaf.n, leaf.shift)
                if leaf.stride * leaf.size == leaf.n:
                    if i == 0 and leaf.stride > 1 and all(t is None or _lower_digit(t) for _, t in parts[1:]):
                        tops[key] = (d, leaf)
                    else:
                        lower_in_channels[key] = False
                else:
                    lower_in_channels.setdefault(key, True)
        return {key[0]: top for key, top in tops.items()
                if key[2] == 0 and lower_in_channels.get(key) and key[0] not in self.pinned}

    def paired_axes(self) -> set[int]:
        """Input axes that several dims carry, each holding every position (an attention matrix
        ``q k^T``: queries x keys).  A position pairs one window from each dim; over all positions
        the node spans the whole axis, so its largest field is global even though each dim's
        fields stay exact for the ops that follow (a softmax or contraction over the keys)."""
        seen: dict[int, int] = {}
        out: set[int] = set()
        for d, tag in enumerate(self.tags):
            if tag is None or self.shape[d] == 1 or not is_complete(tag):
                continue
            for k in {k for k, _ in tag.items()}:
                if k in seen and seen[k] != d:
                    out.add(k)
                seen.setdefault(k, d)
        return out

    def meta(self) -> torch.Tensor:
        """An empty tensor of this shape on the meta device."""
        return torch.empty(self.shape, dtype=self.dtype, device="meta")

    # -- structural ops ----------------------------------------------------------

    def window(self, dim: int, low: Map, high: Map, size: int, what: str) -> SymTensor:
        """Apply a window op along ``dim`` (already normalised, >= 0), giving length ``size``."""
        return self.windows({dim: (low, high, size)}, what)

    def windows(self, per_dim: dict[int, tuple[Map, Map, int]], what: str) -> SymTensor:
        """Apply window ops along several dims at once: ``{dim: (L, H, size)}``.

        A 4th entry ``(L, H, size, step)`` is a dilated window that reads only every
        ``step``-th position of ``[L(u), H(u)]``.  A window along a dim holding
        flattened, partitioned or shuffled positions gives an unknown tensor (``what``
        names the op in that reason), except a plain slice that cuts whole segments
        out of a concatenated dim (a class token sliced off again).
        """
        blocks = {d: w for d, w in per_dim.items() if _block_read(self, d, w)}
        if blocks:
            return self._read_blocks(blocks, what).windows(
                {d: w for d, w in per_dim.items() if d not in blocks}, what)
        shape = list(self.shape)
        for d, (_, _, size, *_) in per_dim.items():
            shape[d] = size
        tags = list(self.tags)
        pinned = self.pinned
        local: dict[int, tuple] = {}  # dims holding the position in a window, read window by window
        tops: dict[tuple, tuple] = {}  # axes whose top digit is read, the lower digits in the channels
        picks: dict[tuple, list] = {}  # axes with a digit fixed by a slice of the dim holding it
        for d, (low, high, size, *taps) in per_dim.items():
            tag = tags[d]
            if tag is None or (low == high == _IDENTITY and size == self.shape[d] and not taps):
                continue  # (an identity window, e.g. a pad by 0, reads any layout)
            if size == 0:  # an empty slice (no prefix tokens) holds no position
                tags[d] = None
                continue
            if _has_offsets(tag):
                return self.as_unknown(f"{what} reads part of a dim of window offsets (an unfold's)", shape=shape)
            if isinstance(tag, Axis) and tag.field.is_global and self.shape[d] == 1:
                # Upsampling a globally pooled value (ASPP's image pooling branch) broadcasts a
                # constant: a context path for later merges, like a size-1 operand broadcast.
                tags[d] = None
                pinned = {**pinned, tag.axis: GLOBAL}
            elif isinstance(tag, Axis):
                tags[d] = Axis(tag.axis, tag.field.through(low, high, taps[0] if taps else 1, size))
            elif isinstance(tag, Sub) and (held := _sole_digits(self, d, tag)) is not None:
                # The axis's only digits left (a reduction dropped the lower ones): an ordinary axis
                # of n / stride positions.
                tags[d] = Axis(tag.axis, held.through(low, high, taps[0] if taps else 1, size))
                pinned = _pins_of_held_digits(pinned, tag)
            elif isinstance(tag, Cat) and (cut := _cut_segments(tag, low, high, size, taps)) is not _NO_CUT:
                tags[d] = cut
            elif (isinstance(tag, Sub) and not taps and d not in local
                  and (plan := _in_window(self, tag, low, high, size)) is not None):
                local[d] = plan
            elif isinstance(tag, Sub) and (plan := _top_digit_window(self, d, tag, (low, high, size, *taps),
                                                                     per_dim)) is not None:
                tops[(tag.axis, tag.n, tag.shift)] = plan
            elif all(f.is_global for _, f in tag.items()):
                # Every position already reads the whole of its axes.  A window that changes the
                # length (a pad, a slice) no longer matches the tag's factors: the positions become
                # irregular ones, still global (a padded position reads nothing; global bounds it).
                tags[d] = tag if size == self.shape[d] else Mixed(tuple(dict.fromkeys(tag.items())))
            elif (straddled := _straddling_blocks(self, d, (low, high, size, *taps))) is not None:
                tags[d] = straddled
            elif (sliced := _digit_slice(self, d, (low, high, size, *taps))) is not None:
                tags[d], fixed = sliced
                for key, at in fixed:
                    picks.setdefault(key, []).append(at)
            else:
                return self.as_unknown(
                    f"{what} reads along a dimension that holds flattened or shuffled spatial positions",
                    shape=shape,
                )
        if local:
            if len({plan[0] for plan in local.values()}) != len(local):
                return self.as_unknown(f"{what} reads two dims holding digits of one axis", shape=shape)
            rewrite = {plan[0]: plan[1:] for plan in local.values()}

            def leaf_fn(_size: int, leaf):
                if not isinstance(leaf, Sub) or (leaf.axis, leaf.n, leaf.shift) not in rewrite:
                    return leaf
                m, new_m, field = rewrite[leaf.axis, leaf.n, leaf.shift]
                if leaf.stride == 1:
                    return Sub(leaf.axis, field, leaf.n // m * new_m, 1, new_m, leaf.shift)
                return Sub(leaf.axis, field, leaf.n // m * new_m, leaf.stride // m * new_m, leaf.size, leaf.shift)

            tags = [_replace_sized(s, t, leaf_fn) for s, t in zip(shape, tags)]
        if tops:
            if local and {(p[0].axis, p[0].n, p[0].shift) if isinstance(p[0], Sub) else p[0] for p in local.values()} & set(tops):
                return self.as_unknown(f"{what} reads two dims holding digits of one axis", shape=shape)

            def top_fn(_size: int, leaf):
                if not isinstance(leaf, Sub) or (leaf.axis, leaf.n, leaf.shift) not in tops:
                    return leaf
                new_n, new_size, field = tops[leaf.axis, leaf.n, leaf.shift]
                top = leaf.stride * leaf.size == leaf.n
                return Sub(leaf.axis, field, new_n, leaf.stride, new_size if top else leaf.size, leaf.shift)

            tags = [_replace_sized(s, t, top_fn) for s, t in zip(shape, tags)]
        if picks:
            if set(picks) & set(tops) or local or any(k[0] in pinned for k in picks):
                return self.as_unknown(f"{what} reads two dims holding digits of one axis", shape=shape)
            if any(not any(isinstance(leaf, Sub) and (leaf.axis, leaf.n, leaf.shift) == key
                           for tag in tags for leaf in _leaves(tag)) for key in picks):
                return self.as_unknown(f"{what} keeps one position of an axis held in the channels only",
                                       shape=shape)

            def pick_fn(_size: int, leaf):
                if not isinstance(leaf, Sub) or (leaf.axis, leaf.n, leaf.shift) not in picks:
                    return leaf
                field = leaf.field
                for at in picks[leaf.axis, leaf.n, leaf.shift]:
                    field = field.through(at, at, size=leaf.n)
                return replace(leaf, field=field)

            tags = [_replace_sized(s, t, pick_fn) for s, t in zip(shape, tags)]
        out = self.like(shape=shape, tags=tags, pinned=pinned)
        if self.parts is not None and self.parts[0] not in per_dim:
            # A crop or window along other dims keeps each concat piece's channels apart.
            pieces = tuple((a, b, piece.windows(per_dim, what)) for a, b, piece in self.parts[1])
            if not any(piece.unknown for _, _, piece in pieces):
                out.parts = (self.parts[0], pieces)
        return out

    def _read_blocks(self, blocks: dict, what: str) -> SymTensor:
        """Windows of ``m`` positions with stride ``m`` (``{dim: (L, H, size)}``, ``size * m`` the dim's
        length) along dims holding flattened or partitioned positions: output ``u`` reads positions
        ``m*u .. m*u + m - 1``, i.e. the dim viewed as ``(size, m)`` and reduced over ``m`` (a pool or a
        conv whose kernel equals its stride; NextViT's ``AvgPool1d`` over flattened tokens)."""
        out = self
        for d in sorted(blocks, reverse=True):
            size = blocks[d][2]
            m = out.shape[d] // size
            out = out.reshape(out.shape[:d] + (size, m) + out.shape[d + 1:]).reduce([d + 1], False, what)
        return out

    def mix(self, dims: Iterable[int], what: str = "", wrap_hidden: bool = False) -> SymTensor:
        """Same shape; every position along ``dims`` now depends on every position along ``dims``
        (the other dims' indices fixed): softmax, attention, norm statistics over those dims.

        Per input axis, the digits (sub-axes, see `Sub`) that ``dims`` hold decide:

        * all of the axis (counting digits no dim holds any more, over which the
          field is already constant): the axis becomes global;
        * only some digits: position ``p`` joins the positions that share its other
          digits, whose hull is a periodic-affine window.  The inner digit of a
          window partition of ``ws`` gives ``L(p) = ws*floor(p/ws)``,
          ``H(p) = L(p) + ws - 1`` (with a roll by ``-s`` first:
          ``L(p) = ws*floor((p - s)/ws) + s``), the outer digit of a grid of ``g``
          blocks (stride ``ws``) ``L(p) = p mod ws``, ``H(p) = L(p) + ws*(g - 1)``.

        A window that wraps around a roll holds positions from both ends of the
        axis: the positions of its group are read modulo the length (a table over
        the axis, exact).  ``wrap_hidden``: a mask hides the pairs the roll brought
        together (a softmax after Swin's additive -100 mask, `rules.mixing.HIDING_LOGIT`),
        so each part of the wrapped window reads its own end only: the periodic
        extension (``-1`` stands for ``n - 1``) cut at the border.  Mixing a dim
        whose positions are irregular (`Mixed` with ``complete=False``) gives unknown.
        """
        if self.unknown:
            return self
        requested = set(dims)
        dims = sorted({d for d in requested if self.tags[d] is not None})
        if not dims:
            if self.parts is not None and self.parts[0] in requested:
                return self.like()  # channels of a concat mixed (softmax over channels): the pieces are gone
            return self
        layouts = _axis_layouts(self)
        mixed: dict[tuple, set] = {}  # copy of an axis (axis, n, shift) -> its digits in `dims`
        complete_axes: set[int] = set()
        cat_dims = []
        for d in dims:
            tag = self.tags[d]
            for size, leaf in _sized_leaves(self.shape[d], tag):
                dig = _digit(leaf, size)
                if dig is not None:
                    if isinstance(leaf, Axis) or (size > 1 and self.shape[d] > 1):
                        # (a size-1 dim left by a partial reduction holds no position of its digits)
                        mixed.setdefault((leaf.axis, dig[2], dig[3]), set()).add(dig[:2])
                elif isinstance(leaf, Mixed):
                    if leaf.complete:
                        complete_axes.update(k for k, _ in leaf.pairs)
                    elif any(not f.is_global for _, f in leaf.pairs):
                        return self.as_unknown(_PARTIAL_MIX.format(what=what or "op"))
            if isinstance(tag, Cat):
                cat_dims.append(d)
        # An axis can be held by several copies (queries x keys of sub-sampled attention: one of
        # 16 positions, one of 8): mixing all of one copy makes the whole axis global for every
        # position; mixing part of a copy changes only that copy's fields.
        global_axes = set(complete_axes)
        updates: dict[tuple, tuple] = {}  # copy -> (L, H, digits)
        for key, digs in mixed.items():
            k, n, shift = key
            try:
                digits = digs | _missing_digits(layouts.get(key, set()), n)
            except _Incompatible as exc:
                return self.as_unknown(f"{what or 'op'}: {exc}")
            if prod(m for _, m in digits) >= n:
                global_axes.add(k)
            else:
                updates[key] = (*_block_maps(digits, shift), digits)
        touched = global_axes | {key[0] for key in updates}
        cache: dict = {}

        def leaf_fn(size: int, leaf):
            if isinstance(leaf, Offsets):
                return leaf
            if isinstance(leaf, Mixed):
                if not any(k in touched for k, _ in leaf.pairs):
                    return leaf
                if any(k not in global_axes and k in touched and not f.is_global for k, f in leaf.pairs):
                    raise _Incompatible("irregular positions of a partly mixed axis")
                return Mixed(tuple((k, GLOBAL if k in touched else f) for k, f in leaf.pairs), leaf.complete)
            if leaf.axis in global_axes:
                return replace(leaf, field=GLOBAL)
            dig = _digit(leaf, size)
            key = (leaf.axis, dig[2], dig[3])
            if key not in updates or leaf.field.is_global:
                return leaf
            if (key, leaf.field) not in cache:
                field, wraps = leaf.field, bool(key[2]) and not wrap_hidden
                if wraps and not field.is_finite:
                    field = field.tabulated(key[1])  # (the wrapped group's members, read modulo n)
                elif field.is_finite and field.size != key[1]:
                    raise _Incompatible("a finite field over another length")
                cache[key, leaf.field] = _group_field(field, *updates[key], wraps=wraps)
            return replace(leaf, field=cache[key, leaf.field])

        try:
            tags = [_replace_sized(s, tag, leaf_fn) for s, tag in zip(self.shape, self.tags)]
        except _Incompatible:
            return self.as_unknown(_PARTIAL_MIX.format(what=what or "op"))
        for d in dims:  # every element now reads the whole window of its unfold: the offsets are gone
            tags[d] = _drop_offsets(self.shape[d], tags[d])
        for d in cat_dims:
            # Every position of the concatenated dim now sees every segment: all their axes, global.
            fields = tags[d].items()
            if any(not f.is_global for _, f in fields):
                return self.as_unknown(_PARTIAL_MIX.format(what=what or "op"))
            summary = Mixed(tuple(sorted({(k, GLOBAL) for k, _ in fields})), True) if fields else None
            tags[d] = Cat(tuple((s, t if t is not None and not isinstance(t, Mixed) else summary)
                                for s, t in tags[d].segments))
        out = self.like(tags=tags)
        if self.parts is not None and self.parts[0] not in requested:
            pieces = tuple((a, b, piece.mix(dims, what, wrap_hidden)) for a, b, piece in self.parts[1])
            if not any(piece.unknown for _, _, piece in pieces):
                out.parts = (self.parts[0], pieces)
        return out

    def normalize(self, dims: Iterable[int], what: str = "") -> SymTensor:
        """Statistics over ``dims`` (GroupNorm, InstanceNorm, LayerNorm over tokens) scale each position.

        When they span whole axes the statistic is spatially constant: a *context*
        path (fields kept, ``global_context`` set), like squeeze-and-excitation.
        Over a part of an axis (the tokens of one window, Swin's patch merging)
        the statistic is a block summary that every position of the block reads:
        the block's field, as `mix` gives it.
        """
        dims = list(dims)
        mixed = self.mix(dims, what)
        if mixed.unknown:
            return mixed
        touched = {k for d in dims if self.tags[d] is not None for k, _ in self.tags[d].items()}
        after = mixed.axis_fields()
        if all(f.is_global for k in touched for f in after.get(k, ())):
            # A spatially constant statistic scales each element: every element keeps its own field, so
            # the concat pieces survive (GroupNorm / InstanceNorm after a concat), each with the context.
            out = self.like()
            out.global_context = True
            if self.parts is not None:
                out.parts = (self.parts[0], tuple((a, b, piece.like()) for a, b, piece in self.parts[1]))
                for _, _, piece in out.parts[1]:
                    piece.global_context = True
            return out
        return mixed

    def reduce(self, dims: Iterable[int], keepdim: bool, what: str = "", wrap_hidden: bool = False) -> SymTensor:
        """Mix whole dims (mean, sum, a contraction) and drop them (size 1 with ``keepdim``), see `mix`
        (``wrap_hidden``: a contraction with attention weights that hide the wrapped part of rolled windows).

        Axes that no dim holds afterwards are global (``pinned``); a dim holding
        only part of an axis (a window's tokens) leaves the other digits' dims with
        the block field, constant over the dropped digits.
        """
        dims = sorted(set(dims))
        out_shape = _reduced_shape(self.shape, dims, keepdim)
        mixed = self.mix(dims, what or "reduction", wrap_hidden)
        if mixed.unknown:
            return self.as_unknown(mixed.unknown, shape=out_shape)
        pinned = dict(mixed.pinned)
        shape, tags = [], []
        for d, (s, tag) in enumerate(zip(mixed.shape, mixed.tags)):
            if d in dims:
                if keepdim:
                    shape.append(1)
                    tags.append(tag)
            else:
                shape.append(s)
                tags.append(tag)
        if not keepdim:
            kept = {k for tag in tags if tag is not None for k, _ in tag.items()}
            for d in dims:
                if mixed.tags[d] is not None:
                    for k, f in mixed.tags[d].items():
                        if k not in kept:
                            pinned[k] = GLOBAL if f.is_global else (pinned[k].merge(f) if k in pinned else f)
        out = mixed.like(shape=shape, tags=tags, pinned=pinned)
        if self.parts is not None and self.parts[0] not in dims:  # a reduction over other dims: pieces kept
            pieces = tuple((a, b, piece.reduce(dims, keepdim, what)) for a, b, piece in self.parts[1])
            if not any(piece.unknown for _, _, piece in pieces):
                d = self.parts[0]
                out.parts = (d if keepdim else d - sum(1 for e in dims if e < d), pieces)
        return out

    def globalize(self, dims: Iterable[int], what: str = "") -> SymTensor:
        """Same as `mix` (kept for rules written before it): every position of ``dims`` depends on all of them."""
        return self.mix(dims, what)

    def roll(self, dim: int, shift: int) -> Optional[SymTensor]:
        """``torch.roll(x, shift, dim)`` on a dim holding one whole axis: a cyclic relabelling
        (`Sub.shift`); ``None`` when the dim holds something else (a part of an axis, tokens)."""
        tag, n = self.tags[dim], self.shape[dim]
        if isinstance(tag, Axis):
            leaf = Sub(tag.axis, tag.field, n, 1, n, 0)
        elif isinstance(tag, Sub) and tag.stride * tag.size == tag.n and tag.size == n:
            # the axis's highest digits; a roll of the dim is a roll of the axis if no other dim holds
            # any of its digits (the lower ones were reduced away: Swin after a patch merging)
            if _axis_layouts(self).get((tag.axis, tag.n, tag.shift)) != {(tag.stride, tag.size)}:
                return None
            leaf = tag
        else:
            return None
        new_shift = (leaf.shift - leaf.stride * int(shift)) % leaf.n
        tags = list(self.tags)
        whole = leaf.stride == 1 and new_shift == 0
        tags[dim] = Axis(leaf.axis, leaf.field) if whole else replace(leaf, shift=new_shift)
        return self.like(tags=tags)

    def with_digits_as_axes(self) -> SymTensor:
        """Dims holding the only digits left of an axis (its top digit: a reduction took the lower ones)
        as ordinary axes of ``n / stride`` positions, as a window op reads them (`_sole_digits`), so
        that they merge with ordinary feature maps."""
        tags, pinned = list(self.tags), self.pinned
        for d, tag in enumerate(self.tags):
            if isinstance(tag, Sub) and (held := _sole_digits(self, d, tag)) is not None:
                tags[d] = Axis(tag.axis, held)
                pinned = _pins_of_held_digits(pinned, tag)
        return self if tags == list(self.tags) else self.like(tags=tags, pinned=pinned)

    def join_axes(self, axes: Iterable[int]) -> SymTensor:
        """Keep the shape, but every position now depends on the whole of input ``axes``.

        What a contraction leaves behind (``A @ v`` summing over every token of
        ``v``): the summed dim is gone, yet each output position read all of its
        axes, whichever dims still carry them.  Dims keep their structure (a
        flattened dim still reshapes back), only the fields of ``axes`` change.
        """
        axes = set(axes)
        if not axes:
            return self

        def leaf_fn(leaf):
            if isinstance(leaf, Mixed):
                return Mixed(tuple((k, GLOBAL if k in axes else f) for k, f in leaf.pairs), leaf.complete)
            if isinstance(leaf, Offsets):
                return None if leaf.axis in axes else leaf
            return replace(leaf, field=GLOBAL) if leaf.axis in axes else leaf

        tags = [_replace_fields(tag, leaf_fn) for tag in self.tags]
        # positions that held no spatial position (a class token) now depend on the whole axes too
        summary = Mixed(tuple((k, GLOBAL) for k in sorted(axes)), True)
        tags = [Cat(tuple((n, summary if t is None else t) for n, t in tag.segments)) if isinstance(tag, Cat) else tag
                for tag in tags]
        pinned = dict(self.pinned)
        carried = {k for tag in tags if tag is not None for k, _ in tag.items()}
        for k in axes:
            if k in pinned or k not in carried:
                pinned[k] = GLOBAL
        return self.like(tags=tags, pinned=pinned)

    def permute(self, order: Sequence[int]) -> SymTensor:
        """Reorder the dims (``x.permute(order)``); fields move with their dims, concat pieces too."""
        out = self.like(shape=[self.shape[i] for i in order], tags=[self.tags[i] for i in order])
        if self.parts is not None:
            out.parts = (list(order).index(self.parts[0]),
                         tuple((a, b, piece.permute(order)) for a, b, piece in self.parts[1]))
        return out

    def with_dtype(self, dtype: torch.dtype) -> SymTensor:
        """The same tensor converted to ``dtype`` (fields and concat pieces kept)."""
        out = self.like(dtype=dtype)
        if self.parts is not None:
            out.parts = (self.parts[0], tuple((a, b, p.with_dtype(dtype)) for a, b, p in self.parts[1]))
        return out

    def index(self, dim: int, position: int) -> SymTensor:
        """Select one position along ``dim`` and drop the dim (``x[:, :, 3]``)."""
        tag = self.tags[dim]
        position0 = position
        pinned = dict(self.pinned)
        shape = self.shape[:dim] + self.shape[dim + 1 :]
        tags = list(self.tags[:dim] + self.tags[dim + 1 :])
        while isinstance(tag, Cat):  # the segment holding the position
            for size, seg in tag.segments:
                if position < size:
                    tag = seg
                    break
                position -= size
        if _has_offsets(tag):
            return self.as_unknown("an index picks one offset of overlapping windows (an unfold's)", shape=shape)
        if tag is not None:
            if isinstance(tag, Axis):
                const = PAMap.constant(position)
                pinned[tag.axis] = tag.field.through(const, const)
            else:
                # One position of a flattened or partitioned dim: bounded by the fields' union; other dims
                # holding a part of the same axes no longer hold regular positions.
                local = set()
                for k, f in tag.items():
                    pinned[k] = pinned[k].merge(f) if k in pinned else f
                    if not f.is_global:
                        local.add(k)
                if local:
                    tags = [_demote(t, local) for t in tags]
        out = self.like(shape=shape, tags=tags, pinned=pinned)
        if self.parts is not None and self.parts[0] != dim:  # an index along another dim: pieces kept
            pieces = tuple((a, b, piece.index(dim, position0)) for a, b, piece in self.parts[1])
            if not any(piece.unknown for _, _, piece in pieces):
                out.parts = (self.parts[0] - (dim < self.parts[0]), pieces)
        return out

    def pad_constant(self, dim: int, left: int, right: int) -> Optional[SymTensor]:
        """A constant pad (``F.pad(x, ..., mode="constant")``) by whole positions along ``dim``: the dim
        becomes the concat of ``left`` constant positions, its old positions, ``right`` constant ones
        (`Cat` segments; CoaT's ``F.pad(EV_hat, (0, 0, 1, 0, 0, 0))``, a zero class-token slot in front
        of the tokens).  Exact for any layout; ``None`` when a side is negative (that is a crop)."""
        if left < 0 or right < 0:
            return None
        tag = self.tags[dim]
        if tag is None or (left == right == 0):
            return self.like(shape=self.shape[:dim] + (self.shape[dim] + left + right,) + self.shape[dim + 1:])
        out = self.like(shape=self.shape[:dim] + (self.shape[dim] + left + right,) + self.shape[dim + 1:],
                        tags=self.tags[:dim] + (_make_cat([(left, None), (self.shape[dim], tag), (right, None)]),)
                        + self.tags[dim + 1:])
        return out

    def reshape(self, new_shape: Sequence[int]) -> SymTensor:
        """``x.reshape(new_shape)`` (one ``-1`` allowed): flattening keeps each part's field so that
        un-flattening restores it; a split that undoes no flatten gives irregular (``Mixed``) dims."""
        return _reshape(self, tuple(int(s) for s in new_shape))

    def __repr__(self) -> str:
        state = f", unknown={self.unknown!r}" if self.unknown else ""
        return f"SymTensor(shape={self.shape}, tags={self.tags}, pinned={self.pinned}{state})"


_PARTIAL_MIX = (
    "{what} mixes a dimension holding only a subset of spatial positions (e.g. window attention); "
    "no exact rule"
)


class _Incompatible(Exception):
    pass


def _reduced_shape(shape, dims, keepdim):
    return tuple(1 if d in dims else s for d, s in enumerate(shape) if keepdim or d not in dims)


# -- token layouts: digits of axes -------------------------------------------------


def _axis_layouts(t: SymTensor) -> dict[tuple[int, int, int], set]:
    """Per copy of an axis held as digits, keyed ``(axis, n, shift)``: the digits ``{(stride, size)}``
    held by dims longer than 1."""
    return _axis_layouts_of(t.shape, t.tags)


def _axis_layouts_of(shape: Sequence[int], tags: Sequence[Optional[Tag]]) -> dict[tuple[int, int, int], set]:
    out: dict[tuple[int, int, int], set] = {}
    for s, tag in zip(shape, tags):
        for size, leaf in _sized_leaves(s, tag):
            dig = _digit(leaf, size)
            if dig is None:
                continue
            stride, m, n, shift = dig
            held = out.setdefault((leaf.axis, n, shift), set())
            if m > 1 and s > 1:
                held.add((stride, m))
    return out


def _missing_digits(held: set, n: int) -> set:
    """The digits ``(stride, size)`` of an axis of length ``n`` that no dim holds."""
    out, cur = set(), 1
    for stride, size in sorted(held):
        if stride < cur or stride % cur:
            raise _Incompatible("overlapping digits of one axis")
        if stride > cur:
            out.add((cur, stride // cur))
        cur = stride * size
    if n % cur:
        raise _Incompatible("digits of an axis do not divide its length")
    if cur < n:
        out.add((cur, n // cur))
    return out


def _block_maps(digits: set, shift: int) -> tuple[PAMap, PAMap]:
    """Hull ``[L(p), H(p)]`` of the positions sharing every digit of ``p`` but ``digits``, for
    positions ``p = q + shift`` of storage index ``q`` (periodic extension across the wrap)."""
    period = max(s * m for s, m in digits)
    extent = sum((m - 1) * s for s, m in digits)
    table = [q - sum(((q // s) % m) * s for s, m in digits) for q in range(period)]
    low = PAMap(period, period, table)
    if shift:
        low = low.compose(PAMap.affine(1, -shift)).shift(shift)
    return low, low.shift(extent)


def _in_window(t: SymTensor, tag: Sub, low: PAMap, high: PAMap, size: int) -> Optional[tuple]:
    """A window op along a dim holding the position inside a window (the lowest digit of an axis,
    the windows' index in other dims): it reads each window alone, zero padding at the window's
    borders (a conv or pool applied to window-partitioned maps: EfficientViT's cascaded attention,
    Hiera's query pooling).  Output ``u`` of window ``w`` reads ``[max(0, L(u)), min(m - 1, H(u))]``
    of that window: over the axis, ``L(p) = m*floor(p/size) + max(0, L(p mod size))``.  Returns
    ``(copy, m, size, new field)``, or ``None`` when the dim is not that (or a unit reads nothing)."""
    m = tag.size
    key = (tag.axis, tag.n, tag.shift)
    if tag.stride != 1 or m == tag.n or tag.shift:
        return None  # (rolled windows: the window that wraps around holds both ends of the axis)
    held = _axis_layouts(t).get(key, set())
    if any(st < m and (st, sz) != (1, m) for st, sz in held) or tag.n % m:
        return None
    lo_t, hi_t = [], []
    for u in range(size):
        a, b = max(0, low(u)), min(m - 1, high(u))
        if a > b:
            return None
        lo_t.append(a)
        hi_t.append(b)
    lo = PAMap(size, m, lo_t)
    hi = PAMap(size, m, hi_t)
    if tag.shift:
        lo = lo.compose(PAMap.affine(1, -tag.shift)).shift(tag.shift)
        hi = hi.compose(PAMap.affine(1, -tag.shift)).shift(tag.shift)
    return key, m, size, tag.field.through(lo, hi)


def _sole_digits(t: SymTensor, d: int, tag: Sub) -> Optional[Field]:
    """The field of ``tag`` as an ordinary axis when dim ``d`` holds every digit of its axis left in
    ``t``, from its stride up, without a roll; else ``None``."""
    if tag.shift or tag.stride * tag.size != tag.n:
        return None
    if _axis_layouts(t).get((tag.axis, tag.n, tag.shift)) != {(tag.stride, tag.size)}:
        return None
    return _held_field(tag.field, tag.n, 0, tag.stride)


def _top_digit_window(t: SymTensor, d: int, tag: Sub, window: tuple, per_dim: dict) -> Optional[tuple]:
    """A window op along dim ``d`` holding the top digit (place value ``s``) of an axis whose lower
    digits other dims hold (space-to-depth: the channels), e.g. a depthwise conv after
    ``pixel_unshuffle``: element ``(o, r)`` (top digit ``o``, lower digits ``r``) reads ``(o', r)``
    for ``o'`` in the window of ``o``, i.e. axis position ``q = s*o + r`` reads ``s*o' + r``: a window
    op along the axis with the maps lifted (`_lift_map`), every ``s``-th position.  Returns ``(new n,
    new top digit size, new field)`` for every digit of the axis, or ``None`` when this is not that
    case (a roll, pinned fields, another dim of the op holding digits of the axis, finite maps)."""
    low, high, size, *taps = window
    key = (tag.axis, tag.n, tag.shift)
    s = tag.stride
    if tag.shift or s <= 1 or s * tag.size != tag.n or tag.axis in t.pinned:
        return None
    if not (isinstance(low, PAMap) and isinstance(high, PAMap)):
        return None
    held = _axis_layouts(t).get(key, set())
    if held == {(s, tag.size)} or not held:
        return None  # the axis's only digits: `_sole_digits` reads them as an ordinary axis
    for dd in per_dim:
        if dd != d and any(isinstance(leaf, Sub) and (leaf.axis, leaf.n, leaf.shift) == key
                           for leaf in _leaves(t.tags[dd])):
            return None
    new_n = s * size
    step = s * (taps[0] if taps else 1)
    return new_n, size, tag.field.through(_lift_map(low, s), _lift_map(high, s), step, new_n)


def _lift_map(m: PAMap, s: int) -> PAMap:
    """``q -> s * m(q // s) + q % s``: a map of a top digit (place value ``s``) as a map of the axis."""
    return PAMap(s * m.period, s * m.advance, [s * m(q // s) + q % s for q in range(s * m.period)])


def _pins_of_held_digits(pinned: dict[int, Field], tag: Sub) -> dict[int, Field]:
    """``pinned`` once the only digits left of ``tag``'s axis are read as an ordinary axis (`_sole_digits`).
    When the dropped digits' field is the one the held digits carry (constant over the dropped ones),
    the held axis's field covers it: kept, it would stay indexed by the old positions (csatv2's DCT stem,
    then an adaptive pool: slopes 8 and 512/7).  Another pinned field is re-indexed like the held digits."""
    if tag.axis not in pinned:
        return pinned
    if pinned[tag.axis] == tag.field:
        return {k: f for k, f in pinned.items() if k != tag.axis}
    return {**pinned, tag.axis: _held_field(pinned[tag.axis], tag.n, 0, tag.stride)}


def _held_field(f: Field, n: int, shift: int, step: int) -> Field:
    """The field of a tensor holding the digits ``>= step`` of an axis of length ``n`` rolled by ``shift``,
    indexed by ``o = q // step`` (the storage index without the dropped digits, over which ``f`` is
    constant): ``f`` read at position ``(step*o + shift) mod n``.  Without a roll that is ``f o (step*u)``;
    with one, a table over the held positions (exact on ``[0, n / step)``)."""
    if f.is_global or (step == 1 and shift == 0):
        return f
    m = n // step
    if shift == 0:
        at = PAMap.affine(step, 0)
        return f.through(at, at, size=m)
    at = PAMap(m, n, [(step * o + shift) % n for o in range(m)])
    return f.through(at, at, size=m)


def _block_read(t: SymTensor, d: int, window: tuple) -> bool:
    """Whether a window op along dim ``d`` reads blocks of ``m`` positions with stride ``m`` that tile a dim
    holding flattened or partitioned positions, which no other case of `SymTensor.windows` reads."""
    low, high, size, *taps = window
    tag, n = t.tags[d], t.shape[d]
    if (taps or tag is None or isinstance(tag, (Axis, Cat)) or size < 1 or n % size or _has_offsets(tag)
            or all(f.is_global for _, f in tag.items())):
        return False
    m = n // size
    if m < 2 or low != PAMap.affine(m, 0) or high != PAMap.affine(m, m - 1):
        return False
    if isinstance(tag, Sub) and (_sole_digits(t, d, tag) is not None or _in_window(t, tag, low, high, size)):
        return False
    rest = m  # the blocks must be digits: whole lowest factors times a divisor of the next one
    for s, _ in reversed(_atoms(n, tag)):
        if rest == 1:
            break
        if rest % s == 0:
            rest //= s
        elif s % rest == 0:
            rest = 1
        else:
            return False
    return True


def _straddling_blocks(t: SymTensor, d: int, window: tuple) -> Optional[Mixed]:
    """Windows of ``m`` consecutive positions, stride ``m``, tiling a dim of whole axes flattened (tokens
    ``Flat((H, Axis), (W, Axis))``) where ``m`` splits no digit (NextViT at 224: 16 tokens over rows of
    28).  Output ``u`` holds tokens ``m*u .. m*u + m - 1``; per axis of place value ``P`` and ``S`` positions
    their digits run from ``(m*u) // P`` to ``(m*u + m - 1) // P``, all ``S`` of them when that range
    crosses a multiple of ``S`` (a row boundary), each a periodic-affine map of ``u``.  The result holds
    no regular layout any more: a `Mixed` dim whose fields are exact per output index, complete (the
    windows tile the dim: mixing all of them mixes every position).  ``None`` when not that case."""
    low, high, size, *taps = window
    tag, n = t.tags[d], t.shape[d]
    if taps or not isinstance(tag, Flat) or size < 1 or n % size:
        return None
    m = n // size
    if m < 2 or low != PAMap.affine(m, 0) or high != PAMap.affine(m, m - 1):
        return None
    atoms = _atoms(n, tag)
    if not all(isinstance(leaf, Axis) or leaf is None for _, leaf in atoms):
        return None
    pairs = []
    place = n
    for i, (s, leaf) in enumerate(atoms):
        place //= s
        if leaf is None:
            continue
        lo_map, hi_map = _digit_range_maps(m, place, s, top=(i == 0))
        pairs.append((leaf.axis, leaf.field.through(lo_map, hi_map)))
    return Mixed(tuple(pairs), complete=True)


def _digit_slice(t: SymTensor, d: int, window: tuple) -> Optional[tuple[Optional[Tag], list]]:
    """A slice ``[a, a + size)`` of a dim made of channels and digits of axes (``pixel_unshuffle``'s
    channels, ``Flat((C, None), (r, Sub), (r, Sub))``) that keeps whole sub-blocks: the parts above
    some level hold one value each, that level a range, the parts below all their values.  A channel
    part keeps its range; a digit fixed to value ``v`` leaves the dim, and the axis then holds only
    positions whose digit is ``v``: every copy's field is read at ``q`` with that digit set to ``v``
    (constant over it, as for a digit no dim holds).  Returns ``(new tag, [(axis key, map)])``, or
    ``None`` when not that case (a digit cut to part of its range, other leaves, a roll)."""
    low, high, size, *taps = window
    tag, n = t.tags[d], t.shape[d]
    if taps or size < 1 or not isinstance(tag, Flat) or not isinstance(low, PAMap) or low != high:
        return None
    if low.period != 1 or low.advance != 1:
        return None
    a = low(0)
    b = a + size
    if a < 0 or b > n:
        return None
    parts = tag.parts
    if not all(leaf is None or (isinstance(leaf, Sub) and leaf.shift == 0) for _, leaf in parts):
        return None
    places = [prod(s for s, _ in parts[i + 1:]) for i in range(len(parts))]
    # the level j: the first part whose value is not the same over the slice
    j = next((i for i, p in enumerate(places) if a // p != (b - 1) // p), len(parts) - 1)
    if a % places[j] or b % places[j]:
        return None
    new_parts: list[tuple[int, Any]] = []
    fixed: list[tuple[tuple, PAMap]] = []
    for i, (s_i, leaf) in enumerate(parts):
        p = places[i]
        if i < j:
            if leaf is not None:
                fixed.append(((leaf.axis, leaf.n, leaf.shift), _digit_set_to(leaf, a // p % s_i)))
        elif i == j:
            lo_v, count = a // p % s_i, (b - a) // p
            if leaf is not None and count != s_i:
                if count != 1:
                    return None  # part of a digit's range: no layout holds it
                fixed.append(((leaf.axis, leaf.n, leaf.shift), _digit_set_to(leaf, lo_v)))
            elif count > 1 or leaf is None:
                new_parts.append((count, leaf))
        else:
            new_parts.append((s_i, leaf))
    new_parts = [(s_i, leaf) for s_i, leaf in new_parts if s_i > 1]
    new_tag = _group(new_parts) if new_parts else None
    return new_tag, fixed


def _digit_set_to(digit: Sub, v: int) -> PAMap:
    """``q -> q`` with ``digit`` (place value ``st``, ``sz`` values) set to ``v``."""
    st, sz = digit.stride, digit.size
    return PAMap(st * sz, st * sz, [u + (v - u // st % sz) * st for u in range(st * sz)])


def _digit_range_maps(m: int, place: int, radix: int, top: bool) -> tuple[PAMap, PAMap]:
    """First and last value of the digit of place value ``place`` and ``radix`` values over the positions
    ``m*u .. m*u + m - 1``, as periodic-affine maps of ``u`` (the whole digit range where it wraps)."""
    def ends(u: int) -> tuple[int, int]:
        q0, q1 = (m * u) // place, (m * u + m - 1) // place
        if top:
            return q0, q1
        if q1 - q0 >= radix or q0 // radix != q1 // radix:
            return 0, radix - 1
        return q0 % radix, q1 % radix

    if top:
        period = place // gcd(m, place)
        advance = m * period // place
    else:
        period = place * radix // gcd(m, place * radix)
        advance = 0
    table = [ends(u) for u in range(period)]
    return PAMap(period, advance, [a for a, _ in table]), PAMap(period, advance, [b for _, b in table])


def _group_field(f: Field, low: PAMap, high: PAMap, digits: set, wraps: bool = False) -> Field:
    """The field of position ``p`` after it joined its group ``{low(p) + sum(d_i * stride_i)}`` (the
    positions sharing its other digits): min of ``lo`` and max of ``hi`` over the group.  When ``f`` is
    non-decreasing that is ``f`` read through the hull ``[low, high]``; otherwise (a field already mixed
    by a grid) every member is visited, over a period of both ``f`` and the group.  ``wraps``: a group
    that a roll wrapped around holds positions of both ends, read modulo the length (``f`` is then a table
    over the axis); else members outside the axis are cut at the border (the wrapped part hidden)."""
    offsets = [0]
    for s, m in digits:
        offsets = [o + d * s for o in offsets for d in range(m)]
    if f.is_finite:
        # A table over the axis (gcvit after its global-query attention): every member of every group.
        n = f.size

        def member(q: int) -> Optional[int]:
            return q % n if wraps else (q if 0 <= q < n else None)

        def member_extreme(m, op) -> FiniteMap:
            out = []
            for p in range(n):
                vals = [v for o in offsets if (q := member(low(p) + o)) is not None and (v := m(q)) is not None]
                out.append(op(vals) if vals else None)
            return FiniteMap(out)

        return Field(member_extreme(f.lo, min), member_extreme(f.hi, max),
                     member_extreme(f.path_lo, min), member_extreme(f.path_hi, max))
    maps = (f.lo, f.hi, f.path_lo, f.path_hi)
    if all(m.is_monotone() for m in maps):
        return f.through(low, high)
    period = lcm(low.period, *(m.period for m in maps))

    def extreme(m: PAMap, op) -> PAMap:
        table = [op(m(low(u) + o) for o in offsets) for u in range(period)]
        return PAMap(period, m.advance * (period // m.period), table)

    return Field(extreme(f.lo, min), extreme(f.hi, max), extreme(f.path_lo, min), extreme(f.path_hi, max))


def _periodic(f: Field) -> bool:
    """Global, or periodic-affine bounds (no finite table)."""
    return f.lo is None or (isinstance(f.lo, PAMap) and isinstance(f.hi, PAMap))


def _demote(tag: Optional[Tag], axes: set) -> Optional[Tag]:
    """``tag`` with the digits of ``axes`` turned into irregular positions."""
    if tag is None or not any(k in axes for k, _ in tag.items()):
        return tag
    if isinstance(tag, Axis):
        return tag
    return Mixed(tuple(tag.items()), complete=False)


_NO_CUT = object()


def _cut_segments(tag: Cat, low: PAMap, high: PAMap, size: int, taps) -> Any:
    """A plain slice of whole segments of a concatenated dim: their tag; else ``_NO_CUT``."""
    if taps or low != high or low.period != 1 or low.advance != 1:
        return _NO_CUT
    start, stop, at = low(0), low(0) + size, 0
    if start < 0 or stop > sum(s for s, _ in tag.segments):
        return _NO_CUT  # a pad, not a slice
    kept = []
    for s, seg in tag.segments:
        a, b = at, at + s
        at = b
        if b <= start or a >= stop:
            continue
        if a < start or b > stop:
            if seg is not None:
                return _NO_CUT
            kept.append((min(b, stop) - max(a, start), None))  # part of a constant segment: constant
            continue
        kept.append((s, seg))
    if len(kept) == 1:
        return kept[0][1]
    if all(seg is None for _, seg in kept):
        return None
    return Cat(tuple(kept))


# -- reshape ---------------------------------------------------------------------


def _atoms(size: int, tag: Optional[Tag]) -> list[tuple[int, Any]]:
    """A dim as its factors ``(size, leaf or None)``, most significant first."""
    if isinstance(tag, Flat):
        return [a for s, t in tag.parts for a in _atoms(s, t)]
    return [(size, tag)]


def _split_atom(size: int, leaf: Any, outer: int) -> Optional[tuple[tuple[int, Any], tuple[int, Any]]]:
    """Split a factor of ``size`` into ``(outer, size // outer)``, or ``None`` when it cannot be."""
    inner = size // outer
    if leaf is None:
        return (outer, None), (inner, None)
    if isinstance(leaf, Axis):
        return (outer, Sub(leaf.axis, leaf.field, size, inner, outer)), (inner, Sub(leaf.axis, leaf.field, size, 1, inner))
    if isinstance(leaf, Sub):
        return ((outer, replace(leaf, stride=leaf.stride * inner, size=outer)),
                (inner, replace(leaf, size=inner)))
    if all(f.is_global for _, f in leaf.items()):
        return (outer, leaf), (inner, leaf)
    return None


def _group(atoms: list[tuple[int, Any]]) -> Optional[Tag]:
    """The tag of a dim made of ``atoms``: adjacent digits of one axis coalesce, the whole axis is an `Axis`."""
    out: list[tuple[int, Any]] = []
    for size, leaf in atoms:
        if out:
            ps, prev = out[-1]
            if prev is None and leaf is None:
                out[-1] = (ps * size, None)
                continue
            if (isinstance(prev, Sub) and isinstance(leaf, Sub) and prev.axis == leaf.axis
                    and prev.field == leaf.field and (prev.n, prev.shift) == (leaf.n, leaf.shift)
                    and prev.stride == leaf.stride * leaf.size):
                out[-1] = (ps * size, replace(leaf, size=ps * size))
                continue
        out.append((size, leaf))
    out = [(s, Axis(t.axis, t.field) if isinstance(t, Sub) and (t.stride, t.size, t.shift) == (1, t.n, 0) else t)
           for s, t in out]
    if all(t is None for _, t in out):
        return None
    if len(out) == 1:
        return out[0][1]
    return Flat(tuple(out))


def _fuse_copies(atoms: list[tuple[int, Any]], t: SymTensor) -> list[tuple[int, Any]]:
    """Digits of axis ``k`` of place value ``s`` and up, followed by another copy of ``k`` with ``s``
    positions: one axis again, each position reading both.

    gcvit's global query attention: keys and values come from windows of ``s`` positions (after the
    contraction only the window digit is left, its field constant over the window), the queries from
    the global map of ``s`` positions, which the window reverse puts at the position in the window.
    Position ``q = s * w + a`` of the regrouped dim reads the window's field at ``q`` and the other
    copy's field at ``a = q mod s``: the union of the two, exactly, as a table over the axis when the
    slopes differ (`Field.merge` with the length).  Only when no dim of ``t`` holds a lower digit of
    that axis (else position ``a`` would not be the position in the window) and without a roll."""
    out: list[tuple[int, Any]] = []
    for size, leaf in atoms:
        prev = out[-1][1] if out else None
        if (isinstance(prev, Sub) and isinstance(leaf, Axis) and leaf.axis == prev.axis and size == prev.stride
                and prev.shift == 0 and prev.stride * prev.size == prev.n and prev.n % size == 0
                and not _has_lower_digit(t, prev)):
            mod = PAMap(size, 0, range(size))  # q -> q mod s
            field = prev.field.merge(leaf.field.through(mod, mod, size=prev.n), size=prev.n)
            out[-1] = (out[-1][0] * size, Sub(prev.axis, field, prev.n, 1, prev.n))
            continue
        out.append((size, leaf))
    return out


def _lower_digit(leaf: Any) -> bool:
    """Whether ``leaf`` is a digit of an axis below its top one (``Sub`` with ``stride * size < n``)."""
    return isinstance(leaf, Sub) and leaf.stride * leaf.size < leaf.n


def _block_copies(t: SymTensor, fs: list, d_top: int, top: Sub) -> list:
    """`SymTensor._axis_copies` entries of one axis with its digits (held as space-to-depth holds them)
    replaced by one copy indexed by the units ``X`` of the top digit's dim: ``X`` holds top digit
    ``o = X // m`` (``m`` the positions after it in that dim: channels, or lower digits of other axes
    that a depthwise conv with a multiplier and a shuffle moved there) and reads the union over the
    block ``[s*o, s*o + s - 1]`` of the axis (``s`` the top digit's place value).  (A dim holding the
    top digits of several axes, tokens, is reported by axis position.)"""
    s, n = top.stride, t.shape[d_top]
    m = n // top.size
    lo, hi = PAMap(m, s, [0] * m), PAMap(m, s, [s - 1] * m)  # X -> s * (X // m) (+ s - 1)
    block = top.field.through(lo, hi, size=n)
    kept = [(key, f, d) for key, f, d in fs if not (key is not None and key[:3] == ("sub", top.n, top.shift))]
    return [(("axis", n), block, d_top)] + kept


def axis_with_channels(tag: Optional[Tag], size: int, t: SymTensor) -> Optional[Tag]:
    """A dim holding an axis (or the only digit left of one: its top digit, the field constant over
    the lower ones) followed by ``m`` positions holding no axis is an axis of ``size`` positions again,
    position ``X`` reading the axis's position (the digit) ``X // m``.

    Depth-to-space written as ``view`` / ``permute`` / ``reshape`` (the channels' sub-positions moved
    behind the rows): without this the dim's units were the axis's positions (stride ``m`` where the
    image's unit moves by 1 on average), and a conv along the dim was unknown."""
    if not isinstance(tag, Flat):
        return tag
    (part, leaf), rest = tag.parts[0], tag.parts[1:]
    if any(r is not None for _, r in rest) or not isinstance(leaf, (Axis, Sub)) or leaf.field.is_global:
        return tag  # (a global field reads the same at every position: nothing to re-index)
    if isinstance(leaf, Sub) and not (leaf.shift == 0 and leaf.stride * leaf.size == leaf.n
                                      and not _has_lower_digit(t, leaf) and leaf.axis not in t.pinned):
        return tag
    m, place = size // part, leaf.stride if isinstance(leaf, Sub) else 1
    at = PAMap(m, place, [0] * m)  # X -> place * (X // m)
    return Axis(leaf.axis, leaf.field.through(at, at, size=size))


def _has_lower_digit(t: SymTensor, digit: Sub) -> bool:
    """Whether some dim of ``t`` holds a digit of ``digit``'s axis below ``digit``'s place value."""
    return any(isinstance(leaf, Sub) and (leaf.axis, leaf.n, leaf.shift) == (digit.axis, digit.n, digit.shift)
               and leaf.stride < digit.stride for tag in t.tags for leaf in _leaves(tag))


def _pin(pinned: dict, tag: Any) -> None:
    """Keep the fields of a size-1 factor (it holds a single position) in ``pinned``."""
    for k, f in tag.items():
        g = f.through(_CONST0, _CONST0) if isinstance(tag, Axis) else f
        pinned[k] = pinned[k].merge(g) if k in pinned else g


def _reshape(t: SymTensor, new_shape: tuple[int, ...]) -> SymTensor:
    if -1 in new_shape:
        known = prod(s for s in new_shape if s != -1)
        total = prod(t.shape)
        new_shape = tuple(total // known if s == -1 else s for s in new_shape)
    if prod(new_shape) != prod(t.shape):
        raise ValueError(f"cannot reshape {t.shape} to {new_shape}")
    pinned = dict(t.pinned)
    queue: list[tuple[int, Any]] = []
    for s, tag in zip(t.shape, t.tags):
        for size, leaf in _atoms(s, tag):
            if size != 1 and s != 1:
                queue.append((size, leaf))
            elif leaf is not None and (not isinstance(leaf, Sub) or leaf.field.is_global):
                # A single position.  (A size-1 dim left by a partial reduction keeps digits whose
                # field the other digits' dims carry, constant over them: nothing to pin.)
                _pin(pinned, leaf)
    queue.reverse()  # pop() takes the most significant factor left
    new_tags: list[Optional[Tag]] = []
    for m in new_shape:
        if m == 1:
            new_tags.append(None)
            continue
        acc, got = [], 1
        while got < m:
            size, leaf = queue.pop()
            if m % (got * size) == 0:
                acc.append((size, leaf))
                got *= size
                continue
            need = m // got
            split = _split_atom(size, leaf, need) if m % got == 0 and size % need == 0 else None
            if split is None:
                return _irregular(t, new_shape, pinned)
            acc.append(split[0])
            queue.append(split[1])
            got = m
        new_tags.append(axis_with_channels(_group(_fuse_copies(acc, t)), m, t))
    out = t.like(shape=new_shape, tags=new_tags, pinned=pinned)
    if t.parts is not None:
        out.parts = _reshaped_parts(t, new_shape)
    return out


def _reshaped_parts(t: SymTensor, new_shape: tuple[int, ...]) -> Optional[tuple]:
    """The concat pieces of ``t`` after a reshape to ``new_shape``, when the concat dim ``d`` lands on one
    dim ``j`` starting at the same element (same number of elements before it) by an affine map of its
    ranges: kept (``m == n``: squeeze, unsqueeze, a view regrouping other dims), its outer digit
    (``n = m * k``: a piece ``[a, b)`` with ``k | a, b`` is ``[a / k, b / k)``) or merged with the
    dims after it (``m = n * k``: ``[a * k, b * k)``).  Each piece is reshaped alike.  ``None`` otherwise
    (an interleaving regrouping, ShuffleNet's channel shuffle: the union, which is exact for its
    halves)."""
    d, parts = t.parts
    n, before = t.shape[d], prod(t.shape[:d])
    for j, m in enumerate(new_shape):
        if prod(new_shape[:j]) != before or (m == 1 and n != 1):
            continue
        if m == n:
            ranges = [(a, b) for a, b, _ in parts]
        elif n % m == 0 and all(a % (n // m) == 0 and b % (n // m) == 0 for a, b, _ in parts):
            ranges = [(a // (n // m), b // (n // m)) for a, b, _ in parts]
        elif n % m == 0 and t.tags[d] is None:
            return _block_parts(t, new_shape, j, n // m)
        elif m % n == 0 and any(prod(t.shape[d + 1:e]) == m // n for e in range(d + 2, t.ndim + 1)):
            ranges = [(a * (m // n), b * (m // n)) for a, b, _ in parts]
        else:
            return None
        pieces = []
        for (a, b), (_, _, piece) in zip(ranges, parts):
            shape = list(new_shape)
            shape[j] = b - a
            try:
                pieces.append((a, b, _reshape(piece, tuple(shape))))
            except ValueError:
                return None
        if any(piece.unknown for _, _, piece in pieces):
            return None
        return j, tuple(pieces)
    return None


def _block_parts(t: SymTensor, new_shape: tuple[int, ...], j: int, k: int) -> Optional[tuple]:
    """Concat pieces of channels ``t.parts`` whose boundaries are not multiples of ``k`` when the concat
    dim is split as ``(n / k, k)`` onto dim ``j``: index ``q`` of dim ``j`` holds channels ``[q*k, q*k + k)``,
    the concat of the overlapping pieces' channels (the union of those pieces only); neighbouring
    blocks with the same fields are one piece."""
    d, parts = t.parts
    blocks: list[tuple[int, int, SymTensor]] = []
    for q in range(t.shape[d] // k):
        lo, hi = q * k, q * k + k
        subs = [piece.like(shape=tuple(min(b, hi) - max(a, lo) if e == d else s for e, s in enumerate(piece.shape)))
                for a, b, piece in parts if a < hi and lo < b]
        block, _ = merge_tensors(subs, tuple(k if e == d else s for e, s in enumerate(t.shape)), "", concat_dim=d)
        if block.unknown:
            return None
        if blocks and same_fields(blocks[-1][2], block):
            blocks[-1] = (blocks[-1][0], q + 1, blocks[-1][2])
        else:
            blocks.append((q, q + 1, block))
    if len(blocks) < 2:
        return None
    pieces = []
    for a, b, block in blocks:
        whole = block.like(shape=tuple((b - a) * k if e == d else s for e, s in enumerate(block.shape)))
        shape = list(new_shape)
        shape[j] = b - a
        piece = _reshape(whole, tuple(shape))
        if piece.unknown:
            return None
        pieces.append((a, b, piece))
    return j, tuple(pieces)


def same_fields(a: SymTensor, b: SymTensor) -> bool:
    """Whether ``a`` and ``b`` carry the same fields (tags, pinned fields, context and probed flags)."""
    return (a.tags, a.pinned, a.global_context, a.probed) == (b.tags, b.pinned, b.global_context, b.probed)


def _irregular(t: SymTensor, new_shape: tuple[int, ...], pinned: dict) -> SymTensor:
    """A regrouping that splits factors unevenly: positions no longer map regularly."""
    items = tuple(item for tag in t.tags if tag is not None for item in tag.items())
    tags = [Mixed(items, complete=False) if items and s != 1 else None for s in new_shape]
    return t.like(shape=new_shape, tags=tags, pinned=pinned)


# -- merges ----------------------------------------------------------------------


@dataclass
class MergeInfo:
    """What happened at a merge, per input axis."""

    aligned: bool = True
    max_center_shift: Fraction = Fraction(0)
    global_context: bool = False


def _broadcast_tag(tag: Optional[Tag], size: int, out_size: int) -> tuple[Optional[Tag], bool]:
    """Tag of an operand dim broadcast from ``size`` to ``out_size``; also whether it was broadcast."""
    if tag is None or size == out_size:
        return tag, False
    if isinstance(tag, Axis):
        return Axis(tag.axis, tag.field.through(_CONST0, _CONST0, size=out_size)), True
    return tag, True


def merge_tensors(operands: Sequence[SymTensor], shape: Sequence[int], what: str, concat_dim: Optional[int] = None):
    """Elementwise merge (add, mul, where, channel concat...) of tensors broadcast to ``shape``.

    Returns ``(tensor, MergeInfo)``.  A global operand that is constant along a
    dim (broadcast from size 1, or reduced) is a *context* path: it does not
    make the result global, it sets ``global_context``.
    """
    ndim = len(shape)
    info = MergeInfo()
    unknown = next((t.unknown for t in operands if t.unknown), None)
    dtype = operands[0].dtype
    if unknown:
        out = SymTensor(shape, dtype)
        out.unknown = unknown
        return out, info
    if concat_dim is None:
        operands = _align_copies(operands)
    tags: list[Optional[Tag]] = []
    for d in range(ndim):
        if d == concat_dim:
            segments = [(t.shape[d - (ndim - t.ndim)], t.tags[d - (ndim - t.ndim)]) for t in operands]
            if any(isinstance(tag, Axis) for _, tag in segments):
                out = SymTensor(shape, dtype)
                out.unknown = f"{what}: concat along a spatial dimension shifts positions; no exact rule"
                return out, info
            tags.append(_make_cat(segments))
            continue
        candidates: list[Tag] = []
        for t in operands:
            od = d - (ndim - t.ndim)
            if od < 0:
                continue
            if d == concat_dim:
                tag, broadcast = t.tags[od], False
            else:
                tag, broadcast = _broadcast_tag(t.tags[od], t.shape[od], shape[d])
            if tag is None:
                continue
            if broadcast and all(f.is_global for _, f in tag.items()):
                info.global_context = True
                continue
            candidates.append(tag)
        try:
            tags.append(_merge_dim_tags(candidates, d == concat_dim, info, shape[d]))
        except (_Incompatible, SlopeMismatch) as exc:
            out = SymTensor(shape, dtype)
            out.unknown = f"{what}: cannot merge operands along dim {d} ({exc})"
            return out, info
    try:
        tags = _unify_copies(tags)
    except SlopeMismatch as exc:
        out = SymTensor(shape, dtype)
        out.unknown = f"{what}: cannot merge the digits of an axis ({exc})"
        return out, info
    pinned: dict[int, Field] = {}
    carried = {k for tag in tags if tag is not None for k, _ in tag.items()}
    for t in operands:
        info.global_context |= t.global_context
        for k, f in t.pinned.items():
            if f.is_global and (k in carried or k in pinned):
                info.global_context = True  # a reduced (constant) operand: context only
                continue
            pinned[k] = pinned[k].merge(f) if k in pinned else f
    out = SymTensor(shape, dtype, tags, pinned, None, info.global_context, any(t.probed for t in operands))
    return out, info




def _unify_copies(tags: list[Optional[Tag]]) -> list[Optional[Tag]]:
    """Every digit of one copy of an axis shares one field (see `Sub`).  After an elementwise merge in
    which an operand lacks some digits (broadcast along them, its field constant over them) the dims
    can hold different fields for one copy: element ``p`` reads the union of the operands' fields at
    ``p``, which every digit of the copy then carries."""
    fields: dict[tuple, list] = {}
    held: dict[tuple, list] = {}
    for tag in tags:
        for leaf in _leaves(tag):
            if isinstance(leaf, Sub):
                key = (leaf.axis, leaf.n, leaf.shift)
                held.setdefault(key, []).append((leaf.stride, leaf.size))
                if leaf.field not in fields.setdefault(key, []):
                    fields[key].append(leaf.field)
    union = {}
    for key, fs in fields.items():
        # (a digit held by two dims pairs two tensors' positions, queries x keys of window attention:
        # each dim keeps its own fields)
        if len(fs) > 1 and len(set(held[key])) == len(held[key]):
            f = fs[0]
            for g in fs[1:]:
                f = _merge_fields(f, g, MergeInfo())  # (the operands' alignment is reported per dim)
            union[key] = f
    if not union:
        return tags

    def leaf_fn(leaf):
        if isinstance(leaf, Sub) and (leaf.axis, leaf.n, leaf.shift) in union:
            return replace(leaf, field=union[leaf.axis, leaf.n, leaf.shift])
        return leaf

    return [_replace_fields(tag, leaf_fn) for tag in tags]


def _align_copies(operands: Sequence[SymTensor]) -> list[SymTensor]:
    """Operands holding digits of two copies of one axis, of lengths ``n`` and ``n / r`` (Hiera's pooled
    queries beside the window's keys and values), re-expressed in the shorter copy where that is exact.

    An operand whose digits of the long copy all have place values divisible by ``r`` holds no digit
    below ``r`` (its field is constant over them, see `Sub`): position ``p`` of the short copy is
    positions ``r*p .. r*p + r - 1`` of the long one, so the digit of place value ``s`` becomes the
    digit ``s / r`` of the short copy, with the field read at ``r*p`` (`_held_field`).  After a
    contraction over the keys, the window digit of the keys is such a digit: the window index of
    ``n`` positions in windows of ``ws`` is the window index of ``n / r`` in windows of ``ws / r``."""
    lengths: dict[int, set] = {}
    whole: set[int] = set()  # axes some operand holds as a whole copy (an `Axis`): left alone
    for t in operands:
        for tag in t.tags:
            for leaf in _leaves(tag):
                if isinstance(leaf, Sub):
                    lengths.setdefault(leaf.axis, set()).add((leaf.n, leaf.shift))
                elif isinstance(leaf, Axis):
                    whole.add(leaf.axis)
    plans: dict[tuple[int, int, int], int] = {}  # (axis, long n, shift 0) -> r
    for axis, copies in lengths.items():
        if axis in whole or len(copies) != 2 or any(shift for _, shift in copies):
            continue
        (n_a, _), (n_b, _) = sorted(copies, reverse=True)
        if n_b and n_a % n_b == 0 and n_a != n_b:
            plans[(axis, n_a, 0)] = n_a // n_b
    if not plans:
        return list(operands)
    out = []
    for t in operands:
        layouts = _axis_layouts(t)
        leaves = [leaf for tag in t.tags for leaf in _leaves(tag) if isinstance(leaf, Sub)]
        rewrite = {key: r for key, r in plans.items()
                   if key in layouts and layouts[key]
                   and all(leaf.stride % r == 0 for leaf in leaves if (leaf.axis, leaf.n, leaf.shift) == key)}
        if not rewrite:
            out.append(t)
            continue

        def leaf_fn(_size: int, leaf, rewrite=rewrite):
            if not isinstance(leaf, Sub) or (key := (leaf.axis, leaf.n, leaf.shift)) not in rewrite:
                return leaf
            r = rewrite[key]
            return Sub(leaf.axis, _held_field(leaf.field, leaf.n, 0, r), leaf.n // r, leaf.stride // r, leaf.size)

        out.append(t.like(tags=[_replace_sized(sz, tag, leaf_fn) for sz, tag in zip(t.shape, t.tags)]))
    return out


def _make_cat(segments: list[tuple[int, Optional[Tag]]]) -> Optional[Tag]:
    """The tag of a dim made of ``segments`` concatenated (nested concats flattened)."""
    flat: list[tuple[int, Optional[Tag]]] = []
    for size, tag in segments:
        if isinstance(tag, Cat):
            flat.extend(tag.segments)
        elif size:
            flat.append((size, tag))
    # adjacent constant segments are one (a zero pad in front of a class token slot)
    merged: list[tuple[int, Optional[Tag]]] = []
    for size, tag in flat:
        if merged and tag is None and merged[-1][1] is None:
            merged[-1] = (merged[-1][0] + size, None)
        else:
            merged.append((size, tag))
    flat = merged
    if all(tag is None for _, tag in flat):
        return None
    if len(flat) == 1:
        return flat[0][1]
    return Cat(tuple(flat))


def _merge_dim_tags(candidates: list[Tag], is_concat: bool, info: MergeInfo, size: int) -> Optional[Tag]:
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if all(isinstance(c, Axis) for c in candidates):
        axes = {c.axis for c in candidates}
        if len(axes) != 1:
            raise _Incompatible(f"operands carry different input axes {sorted(axes)}")
        fields = [c.field for c in candidates]
        local = [f for f in fields if not f.is_global]
        if len(local) < len(fields):
            # A full-size global operand (e.g. attention output) absorbs the local ones.
            return Axis(candidates[0].axis, GLOBAL)
        merged = local[0]
        for f in local[1:]:
            shift = _center_shift(local[0], f)
            if shift or f.stride != local[0].stride:
                info.aligned = False
            info.max_center_shift = max(info.max_center_shift, shift)
            merged = _merged(merged, f, size)  # different slopes: exact tables over the dim's length
        return Axis(candidates[0].axis, merged)
    if all(c == candidates[0] for c in candidates):
        return candidates[0]
    merged = candidates[0]
    try:
        for c in candidates[1:]:
            merged = _merge_struct(merged, c, info)
        return merged
    except _Incompatible:
        return _mixed_union(candidates)


# A concat of many pieces (DenseNet: every layer's features so far) merges the same prefix again at every
# layer: the merges and center shifts of fields (immutable, hashable) are remembered, a bounded number, and
# only for small periodic fields whose merge stays periodic (no memory that grows with the image).
def _merged(a: Field, b: Field, size: Optional[int]) -> Field:
    if _small(a) and _small(b) and _same_slope(a.lo, b.lo) and _same_slope(a.hi, b.hi):
        return _merged_small(a, b, size)
    return a.merge(b, size)


def _center_shift(a: Field, b: Field) -> Fraction:
    return _center_shift_small(a, b) if _small(a) and _small(b) else a.max_center_shift(b)


@functools.lru_cache(maxsize=1024)
def _merged_small(a: Field, b: Field, size: Optional[int]) -> Field:
    return a.merge(b, size)


@functools.lru_cache(maxsize=1024)
def _center_shift_small(a: Field, b: Field) -> Fraction:
    return a.max_center_shift(b)


def clear_merge_caches() -> None:
    """Forget the remembered field merges (`benchmarks/speed.py` times each analysis as the first one)."""
    _merged_small.cache_clear()
    _center_shift_small.cache_clear()


def _same_slope(m: PAMap, n: PAMap) -> bool:
    return m.advance * n.period == n.advance * m.period


def _small(f: Field) -> bool:
    """A local field of periodic-affine maps with short periods (at most 64 units)."""
    return f.lo is not None and all(isinstance(m, PAMap) and m.period <= 64
                                    for m in (f.lo, f.hi, f.path_lo, f.path_hi))


def _merge_fields(a: Field, b: Field, info: MergeInfo) -> Field:
    if a.is_global or b.is_global:
        return GLOBAL
    if a == b:
        return a
    shift = _center_shift(a, b)
    if shift or a.stride != b.stride:
        info.aligned = False
    info.max_center_shift = max(info.max_center_shift, shift)
    return _merged(a, b, None)


def _merge_struct(a: Optional[Tag], b: Optional[Tag], info: MergeInfo) -> Optional[Tag]:
    """Elementwise merge of two tags with the same layout (same digits, parts, segments): fields merge."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if isinstance(a, Axis) and isinstance(b, Axis) and a.axis == b.axis:
        return Axis(a.axis, _merge_fields(a.field, b.field, info))
    if isinstance(a, Sub) and isinstance(b, Sub) and (a.axis, a.n, a.stride, a.size, a.shift) == (
            b.axis, b.n, b.stride, b.size, b.shift):
        return replace(a, field=_merge_fields(a.field, b.field, info))
    if isinstance(a, Axis) and isinstance(b, Sub):
        a, b = b, a
    if (isinstance(a, Sub) and isinstance(b, Axis) and a.axis == b.axis and a.shift == 0
            and a.stride * a.size == a.n and a.stride > 1):
        # One operand holds the axis's top digit (a window partition's index: HaloNet's query blocks),
        # the other an axis of as many positions (the blocks of an unfold: HaloNet's keys): position
        # ``p`` of the partitioned copy is block ``p // stride`` of the other, whose field is constant
        # over the lower digits.  (`merge_tensors` then gives every digit of the copy the union.)
        block = PAMap.floor_div(a.stride)
        return replace(a, field=_merge_fields(a.field, b.field.through(block, block), info))
    if isinstance(a, Flat) and isinstance(b, Flat) and [s for s, _ in a.parts] == [s for s, _ in b.parts]:
        return Flat(tuple((s, _merge_struct(x, y, info)) for (s, x), (_, y) in zip(a.parts, b.parts)))
    if isinstance(a, Cat) and isinstance(b, Cat) and [s for s, _ in a.segments] == [s for s, _ in b.segments]:
        return Cat(tuple((s, _merge_struct(x, y, info)) for (s, x), (_, y) in zip(a.segments, b.segments)))
    if isinstance(a, Mixed) and isinstance(b, Mixed):
        return _mixed_union([a, b])
    raise _Incompatible("different layouts")


def _mixed_union(candidates: list[Tag]) -> Mixed:
    """Flattened or mixed positions: keep the union of the fields; positions are no longer regular."""
    by_axis: dict[int, Field] = {}
    for c in candidates:
        for k, f in c.items():
            by_axis[k] = _union(by_axis[k], f) if k in by_axis else f
    return Mixed(tuple(sorted(by_axis.items())), complete=all(is_complete(c) for c in candidates))


def _union(a: Field, b: Field) -> Field:
    """Union of fields that need not share positions (used where positions are irregular)."""
    if a.is_global or b.is_global:
        return GLOBAL
    return a.merge(b)
