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

from dataclasses import dataclass
from fractions import Fraction
from math import prod
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from .algebra import GLOBAL, Field, PAMap, SlopeMismatch

__all__ = ["collect", "shape_by_execution", "Axis", "Flat", "Mixed", "Tag", "is_complete", "is_mixable", "SymTensor", "MergeInfo", "merge_tensors"]


def collect(value: Any, kind: type) -> list:
    """Every instance of ``kind`` in ``value``, looking inside lists, tuples and dicts, in order."""
    if isinstance(value, kind):
        return [value]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in collect(v, kind)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in collect(v, kind)]
    return []


def shape_by_execution(fn: Callable, args: tuple, kwargs: dict, device: torch.device) -> Any:
    """Run ``fn`` on data-free stand-ins of the `SymTensor` arguments; return the results' stand-ins.

    Meta tensors when the model lives on the meta device; otherwise fake CPU
    tensors, so that no activation memory is used in either case.
    """

    def to_tensor(v):
        if isinstance(v, SymTensor):
            return torch.empty(v.shape, dtype=v.dtype, device=device if device.type == "meta" else "cpu")
        if isinstance(v, (list, tuple)):
            return type(v)(to_tensor(x) for x in v) if not hasattr(v, "_fields") else type(v)(*map(to_tensor, v))
        if isinstance(v, dict):
            return {k: to_tensor(x) for k, x in v.items()}
        return v

    if device.type == "meta":
        return fn(*to_tensor(args), **to_tensor(kwargs))
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            return fn(*to_tensor(args), **to_tensor(kwargs))
    except Exception:
        # Data-dependent code (``if x.sum() > 0``) cannot run on fake tensors: run it on zeros.
        with torch.no_grad():
            real_args = _map_sym(args, lambda v: torch.zeros(v.shape, dtype=v.dtype))
            return fn(*real_args, **_map_sym(kwargs, lambda v: torch.zeros(v.shape, dtype=v.dtype)))


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
    axis: int
    field: Field

    def items(self) -> tuple[tuple[int, Field], ...]:
        return ((self.axis, self.field),)


@dataclass(frozen=True)
class Flat:
    parts: tuple[tuple[int, Optional["Tag"]], ...]

    def items(self) -> tuple[tuple[int, Field], ...]:
        return tuple(item for _, tag in self.parts if tag is not None for item in tag.items())


@dataclass(frozen=True)
class Mixed:
    pairs: tuple[tuple[int, Field], ...]
    #: True when the dim still holds every position of its axes (a class token
    #: concatenated to flattened tokens); False after a split (window partition),
    #: where mixing the dim mixes only a subset of positions.
    complete: bool = True

    def items(self) -> tuple[tuple[int, Field], ...]:
        return self.pairs


Tag = Union[Axis, Flat, Mixed]


def is_complete(tag: Optional[Tag]) -> bool:
    """Whether mixing along a dim with this tag mixes every position of its axes."""
    if isinstance(tag, Mixed):
        return tag.complete
    if isinstance(tag, Flat):
        return all(is_complete(t) for _, t in tag.parts)
    return True


def is_mixable(tag: Optional[Tag]) -> bool:
    """Whether mixing along a dim with this tag has an exact answer here: the dim holds every
    position of its axes, or every position it holds already depends on the whole of them (a
    subset of global positions mixes to global)."""
    return is_complete(tag) or all(f.is_global for _, f in tag.items())

_CONST0 = PAMap.constant(0)


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
        #: Only the concat itself and ops returning their input unchanged carry it.
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

    def axis_fields(self) -> dict[int, list[Field]]:
        """Every field this tensor holds, grouped by input axis."""
        out: dict[int, list[Field]] = {}
        for tag in self.tags:
            if tag is not None:
                for k, f in tag.items():
                    out.setdefault(k, []).append(f)
        for k, f in self.pinned.items():
            out.setdefault(k, []).append(f)
        return out

    def axis_dims(self) -> dict[int, int]:
        """Tensor dim carrying each input axis (the first one, if several do)."""
        out: dict[int, int] = {}
        for d, tag in enumerate(self.tags):
            if tag is not None:
                for k, _ in tag.items():
                    out.setdefault(k, d)
        return out

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

    def window(self, dim: int, low: PAMap, high: PAMap, size: int, what: str) -> SymTensor:
        """Apply a window op along ``dim`` (already normalised, >= 0), giving length ``size``."""
        return self.windows({dim: (low, high, size)}, what)

    def windows(self, per_dim: dict[int, tuple[PAMap, PAMap, int]], what: str) -> SymTensor:
        """Apply window ops along several dims at once: ``{dim: (L, H, size)}``.

        A 4th entry ``(L, H, size, step)`` is a dilated window that reads only every
        ``step``-th position of ``[L(u), H(u)]``.  A window along a dim holding
        flattened or shuffled positions gives an unknown tensor; ``what`` names the
        op in that reason.
        """
        shape = list(self.shape)
        tags = list(self.tags)
        pinned = self.pinned
        for d, (low, high, size, *taps) in per_dim.items():
            shape[d] = size
            tag = tags[d]
            if tag is None:
                continue
            if isinstance(tag, Axis) and tag.field.is_global and self.shape[d] == 1:
                # Upsampling a globally pooled value (ASPP's image pooling branch) broadcasts a
                # constant: a context path for later merges, like a size-1 operand broadcast.
                tags[d] = None
                pinned = {**pinned, tag.axis: GLOBAL}
            elif isinstance(tag, Axis):
                tags[d] = Axis(tag.axis, tag.field.through(low, high, taps[0] if taps else 1))
            elif all(f.is_global for _, f in tag.items()):
                tags[d] = tag
            else:
                return self.as_unknown(
                    f"{what} reads along a dimension that holds flattened or shuffled spatial positions",
                    shape=shape,
                )
        out = self.like(shape=shape, tags=tags, pinned=pinned)
        if self.parts is not None and self.parts[0] not in per_dim:
            # A crop or window along other dims keeps each concat piece's channels apart.
            pieces = tuple((a, b, piece.windows(per_dim, what)) for a, b, piece in self.parts[1])
            if not any(piece.unknown for _, _, piece in pieces):
                out.parts = (self.parts[0], pieces)
        return out

    def reduce(self, dims: Iterable[int], keepdim: bool, what: str = "") -> SymTensor:
        """Mix whole dims (mean, sum, softmax over tokens...): their axes become global."""
        dims = sorted(set(dims))
        if any(not is_mixable(self.tags[d]) for d in dims):
            return self.as_unknown(_PARTIAL_MIX.format(what=what or "reduction"), shape=_reduced_shape(self.shape, dims, keepdim))
        pinned = dict(self.pinned)
        shape, tags = [], []
        for d, (s, tag) in enumerate(zip(self.shape, self.tags)):
            if d in dims:
                if keepdim:
                    shape.append(1)
                    tags.append(_global_tag(tag))
                elif tag is not None:
                    for k, _ in tag.items():
                        pinned[k] = GLOBAL
            else:
                shape.append(s)
                tags.append(tag)
        return self.like(shape=shape, tags=tags, pinned=pinned)

    def globalize(self, dims: Iterable[int], what: str = "") -> SymTensor:
        """Keep the shape, but every position of ``dims`` now depends on the whole of their axes."""
        tags = list(self.tags)
        for d in dims:
            if not is_mixable(tags[d]):
                return self.as_unknown(_PARTIAL_MIX.format(what=what or "op"))
            tags[d] = _global_tag(tags[d])
        return self.like(tags=tags)

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
        tags = [_join_tag(tag, axes) for tag in self.tags]
        pinned = dict(self.pinned)
        carried = {k for tag in tags if tag is not None for k, _ in tag.items()}
        for k in axes:
            if k in pinned or k not in carried:
                pinned[k] = GLOBAL
        return self.like(tags=tags, pinned=pinned)

    def permute(self, order: Sequence[int]) -> SymTensor:
        """Reorder the dims (``x.permute(order)``); fields move with their dims."""
        return self.like(shape=[self.shape[i] for i in order], tags=[self.tags[i] for i in order])

    def index(self, dim: int, position: int) -> SymTensor:
        """Select one position along ``dim`` and drop the dim (``x[:, :, 3]``)."""
        tag = self.tags[dim]
        pinned = dict(self.pinned)
        if tag is not None:
            if isinstance(tag, Axis):
                const = PAMap.constant(position)
                pinned[tag.axis] = tag.field.through(const, const)
            else:
                # One position of a flattened dim: its field is bounded by the fields' union.
                for k, f in tag.items():
                    pinned[k] = pinned[k].merge(f) if k in pinned else f
        shape = self.shape[:dim] + self.shape[dim + 1 :]
        tags = self.tags[:dim] + self.tags[dim + 1 :]
        return self.like(shape=shape, tags=tags, pinned=pinned)

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


def _global_tag(tag: Optional[Tag]) -> Optional[Tag]:
    if tag is None:
        return None
    items = tag.items()
    if isinstance(tag, Axis):
        return Axis(tag.axis, GLOBAL)
    return Mixed(tuple((k, GLOBAL) for k, _ in items)) if items else None


def _join_tag(tag: Optional[Tag], axes: set[int]) -> Optional[Tag]:
    """``tag`` with the fields of ``axes`` made global, its structure kept."""
    if tag is None:
        return None
    if isinstance(tag, Axis):
        return Axis(tag.axis, GLOBAL) if tag.axis in axes else tag
    if isinstance(tag, Flat):
        return Flat(tuple((size, _join_tag(part, axes)) for size, part in tag.parts))
    if isinstance(tag, Mixed):
        return Mixed(tuple((k, GLOBAL if k in axes else f) for k, f in tag.pairs), tag.complete)
    raise TypeError(f"no join for tag {tag!r}")


def _reduced_shape(shape, dims, keepdim):
    return tuple(1 if d in dims else s for d, s in enumerate(shape) if keepdim or d not in dims)


# -- reshape ---------------------------------------------------------------------


def _flatten_tags(parts: list[tuple[int, Optional[Tag]]]) -> Optional[Tag]:
    if all(tag is None for _, tag in parts):
        return None
    return Flat(tuple(parts))


def _reshape(t: SymTensor, new_shape: tuple[int, ...]) -> SymTensor:
    if -1 in new_shape:
        known = prod(s for s in new_shape if s != -1)
        total = prod(t.shape)
        new_shape = tuple(total // known if s == -1 else s for s in new_shape)
    if prod(new_shape) != prod(t.shape):
        raise ValueError(f"cannot reshape {t.shape} to {new_shape}")
    pinned = dict(t.pinned)
    # Size-1 dims carry at most one position: drop them from the grouping and pin their fields.
    in_dims = []
    for d, (s, tag) in enumerate(zip(t.shape, t.tags)):
        if s == 1 and tag is not None:
            for k, f in tag.items():
                g = f.through(_CONST0, _CONST0) if isinstance(tag, Axis) else f
                pinned[k] = pinned[k].merge(g) if k in pinned else g
        elif s != 1:
            in_dims.append(d)
    out_dims = [d for d, s in enumerate(new_shape) if s != 1]
    new_tags: list[Optional[Tag]] = [None] * len(new_shape)
    i = j = 0
    while i < len(in_dims) and j < len(out_dims):
        gi, gj = [in_dims[i]], [out_dims[j]]
        pi, pj = t.shape[in_dims[i]], new_shape[out_dims[j]]
        i += 1
        j += 1
        while pi != pj:
            if pi < pj:
                gi.append(in_dims[i])
                pi *= t.shape[in_dims[i]]
                i += 1
            else:
                gj.append(out_dims[j])
                pj *= new_shape[out_dims[j]]
                j += 1
        in_tags = [t.tags[d] for d in gi]
        if len(gi) == 1 and len(gj) == 1:
            new_tags[gj[0]] = in_tags[0]
        elif len(gj) == 1:
            new_tags[gj[0]] = _flatten_tags([(t.shape[d], t.tags[d]) for d in gi])
        elif len(gi) == 1 and isinstance(in_tags[0], Flat) and _unflattens(in_tags[0], [new_shape[d] for d in gj]):
            parts = [p for p in in_tags[0].parts if p[0] != 1]
            for d, (_, tag) in zip(gj, parts):
                new_tags[d] = tag
            for size, tag in in_tags[0].parts:
                if size == 1 and tag is not None:
                    for k, f in tag.items():
                        pinned[k] = pinned[k].merge(f) if k in pinned else f
        else:
            # A split or regrouping that does not undo a flatten: positions no longer map regularly.
            items: list[tuple[int, Field]] = []
            for tag in in_tags:
                if tag is not None:
                    items.extend(tag.items())
            for d in gj:
                new_tags[d] = Mixed(tuple(items), complete=False) if items else None
    return t.like(shape=new_shape, tags=new_tags, pinned=pinned)


def _unflattens(tag: Flat, sizes: list[int]) -> bool:
    return [s for s, _ in tag.parts if s != 1] == sizes


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
        return Axis(tag.axis, tag.field.through(_CONST0, _CONST0)), True
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
    tags: list[Optional[Tag]] = []
    local_by_axis: dict[int, list[Field]] = {}
    for d in range(ndim):
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
            tags.append(_merge_dim_tags(candidates, d == concat_dim, info, local_by_axis))
        except (_Incompatible, SlopeMismatch) as exc:
            out = SymTensor(shape, dtype)
            out.unknown = f"{what}: cannot merge operands along dim {d} ({exc})"
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


class _Incompatible(Exception):
    pass


def _merge_dim_tags(candidates: list[Tag], is_concat: bool, info: MergeInfo, seen: dict) -> Optional[Tag]:
    if not candidates:
        return None
    if is_concat:
        if any(isinstance(c, Axis) for c in candidates):
            raise _Incompatible("concat along a spatial dimension shifts positions; no exact rule")
        # Flattened tokens concatenated (e.g. a class token): positions shift, only the union stays.
        return _mixed_union(candidates)
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
            shift = local[0].max_center_shift(f)
            if shift or f.stride != local[0].stride:
                info.aligned = False
            info.max_center_shift = max(info.max_center_shift, shift)
            merged = merged.merge(f)
        return Axis(candidates[0].axis, merged)
    if all(c == candidates[0] for c in candidates):
        return candidates[0]
    return _mixed_union(candidates)


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
