"""Memory plan: every scratchpad region of a program, where it lies and when it is live.

A program runs in *phases*, the sections the compiler names (``input``,
``block 0 attention``, ``block 0 mlp``, ..., ``output``); each phase runs on
the token count of its stage. Each phase names the ACT regions it uses: those
it reads or writes and those whose values it carries to a later phase. An ACT
region is live in exactly those phases (the same region of every block, such
as ``scores``, has one address and is live in each block's attention phase),
so between them its words are free for others. ACT is allocated by liveness:
two regions live in a common phase *conflict*, and greedy first-fit places
each region at the lowest address that overlaps no conflicting region already
placed. It does so in two orders, longest-lived first (the token buffers,
``normalized``, ``sublayer``) then largest, and largest first then
longest-lived, and keeps the shallower layout (the first on a tie). ACT then
holds about the largest set of regions live at once rather than their sum.
With two ACT banks (``bank_start``, the first word of the second) a region may
be pinned to one: bank 0 ends by ``bank_start``, bank 1 starts there. Pinned
regions come first in both orders, each from the start of its bank, the rest
anywhere. PRM and LNP regions lie from offset 0 at each
load, live from that load's phase through its last user. B operands take
alternate halves of WGT, so the plan only needs the largest. The compiler
takes its addresses from the plan and
:func:`~vitforge.sw.accel.compiler.config_for` its scratchpad sizes, so the
two cannot disagree.
"""

from dataclasses import dataclass

from vitforge.errors import ConfigError
from vitforge.hw.accel.isa import Space

__all__ = ["Phase", "Allocation", "Operand", "Reduction", "MemoryPlan", "PlanBuilder"]


@dataclass(frozen=True)
class Phase:
    """A section of the program and the token count its instructions run on."""

    name: str
    tokens: int


@dataclass(frozen=True)
class Allocation:
    """``words`` entries of scratchpad ``space`` from ``start``, live in ``phases``
    (increasing indices into :attr:`MemoryPlan.phases`); ``bank`` is the ACT bank it
    is pinned to (0 or 1), or ``None``."""

    space: Space
    name: str
    start: int
    words: int
    phases: tuple
    bank: int = None

    @property
    def first(self):
        """The first phase it is live in."""
        return self.phases[0]

    @property
    def last(self):
        """The last phase it is live in."""
        return self.phases[-1]

    @property
    def end(self):
        """The entry after the region."""
        return self.start + self.words

    @property
    def description(self):
        """How error messages name the region."""
        if self.space == Space.ACT:
            return f"activation region {self.name}"
        if self.space == Space.PRM:
            return f"{self.name} params"
        return f"{self.name} LayerNorm parameters"


@dataclass(frozen=True)
class Operand:
    """A GEMM B operand of ``words`` WGT words, loaded into a half of WGT in ``phase``; a
    layer's weights may load in column chunks, of ``tile_words`` each (``None``: whole)."""

    name: str
    words: int
    phase: int
    tile_words: int = None


@dataclass(frozen=True)
class Reduction:
    """A GEMM of ``phase`` reducing over ``depth`` (what ``k_max`` must hold)."""

    name: str
    depth: int
    phase: int


_DEPTH_NAMES = {Space.ACT: "act_depth", Space.PRM: "prm_depth", Space.LNP: "lnp_depth"}


@dataclass(frozen=True)
class MemoryPlan:
    """The scratchpad layout of one program; build it with :class:`PlanBuilder`.

    Attributes
    ----------
    lanes : int
        The array size the layout is for.
    phases : tuple of Phase
        In program order.
    regions : tuple of Allocation
        ACT regions in the order they are declared, then the PRM and LNP
        regions of each load in program order.
    operands : tuple of Operand
        The WGT operands in the order they are loaded.
    reductions : tuple of Reduction
        The reduction depths of the GEMMs, in program order.
    bank_start : int or None
        The first word of the second ACT bank the plan pins regions to, or
        ``None`` for an unbanked plan.
    """

    lanes: int
    phases: tuple
    regions: tuple
    operands: tuple
    reductions: tuple
    bank_start: int = None

    def phase(self, name):
        """The index of the phase called ``name``."""
        for index, phase in enumerate(self.phases):
            if phase.name == name:
                return index
        raise KeyError(f"the plan has no phase {name!r}")

    def region(self, space, name):
        """The region of ``space`` called ``name``."""
        for region in self.regions:
            if region.space == space and region.name == name:
                return region
        raise KeyError(f"the plan has no {Space(space).name} region {name!r}")

    def loaded_in(self, space, phase):
        """The regions of ``space`` loaded at the start of ``phase``, in entry order."""
        return tuple(region for region in self.regions
                     if region.space == space and region.first == phase)

    def depth(self, space):
        """Entries of ``space`` (ACT, PRM or LNP) the program needs."""
        return max((region.end for region in self.regions if region.space == space),
                   default=0)

    @property
    def weight_words(self):
        """The largest WGT operand: what each half of WGT must hold."""
        return max(operand.words for operand in self.operands)

    @property
    def least_weight_words(self):
        """The least each half of WGT must hold when layers load in chunks of column tiles
        no wider than a half holds: the largest operand that loads whole, or column tile."""
        return max(operand.tile_words or operand.words for operand in self.operands)

    @property
    def reduction_depth(self):
        """The deepest GEMM reduction: what ``k_max`` must hold."""
        return max(reduction.depth for reduction in self.reductions)

    def check(self, config):
        """Raise ``ValueError`` naming the first thing that does not fit ``config``.

        Reduction depths are checked first, then the ACT banks (a banked plan's
        must split where ``config``'s do), then ACT regions, then the loads in
        program order.
        """
        for reduction in self.reductions:
            if reduction.depth > config.k_max:
                raise ConfigError(f"{reduction.name} {reduction.depth} exceeds "
                                  f"k_max={config.k_max}: a GEMM reduces over it")
        if self.bank_start not in (None, config.act_bank_start):
            banks = "has one ACT bank" if config.act_bank_start is None else \
                f"splits ACT at word {config.act_bank_start}"
            raise ConfigError(f"the plan's ACT banks split at word {self.bank_start}, but "
                              f"the config {banks}")
        for space in (Space.ACT, Space.PRM, Space.LNP):
            depth = getattr(config, _DEPTH_NAMES[space])
            for region in self.regions:
                if region.space == space and region.end > depth:
                    raise ConfigError(f"{region.description} needs {space.name} words "
                                      f"{region.start}..{region.end - 1}, beyond "
                                      f"{_DEPTH_NAMES[space]}={depth}")
        half = config.wgt_depth // 2
        for operand in self.operands:
            if operand.words > half:
                raise ConfigError(f"{operand.name} needs {operand.words} WGT words, but half "
                                  f"of wgt_depth={config.wgt_depth} holds {half}")


class PlanBuilder:
    """Collects phases, region uses, loads, operands and reductions into a :class:`MemoryPlan`.

    Parameters
    ----------
    lanes : int
        The array size.
    align : int
        Every ACT region starts at, and spans, a multiple of this many words
        (``k_per_cycle``: the GEMM reads aligned groups).
    """

    def __init__(self, lanes, align=1):
        self.lanes = lanes
        self.align = align
        self.phases = []
        self.uses = {}            # ACT region name -> indices of the phases using it
        self.loads = []           # Regions of PRM and LNP
        self.operands = []
        self.reductions = []

    def phase(self, name, tokens, *activations):
        """Start phase ``name`` on ``tokens`` tokens, using the ACT regions ``activations``.

        Returns the phase's index.
        """
        index = len(self.phases)
        self.phases.append(Phase(name, tokens))
        for region in activations:
            self.uses.setdefault(region, []).append(index)
        return index

    def load(self, space, first, last, entries):
        """A load into ``space`` (PRM or LNP) at phase ``first``, live through ``last``.

        ``entries`` are ``(name, count)`` pairs, laid out from the first entry after those of
        the earlier loads still live in ``first`` (from entry 0 if there are none).
        """
        start = max((load.end for load in self.loads
                     if load.space == space and first in load.phases), default=0)
        for name, count in entries:
            self.loads.append(Allocation(Space(space), name, start, count,
                                         tuple(range(first, last + 1))))
            start += count

    def operand(self, phase, name, words, tile_words=None):
        """A WGT operand of ``words`` words loaded in ``phase`` (a layer's weights: in
        column chunks of ``tile_words`` each)."""
        self.operands.append(Operand(name, words, phase, tile_words))

    def reduction(self, phase, name, depth):
        """A GEMM of ``phase`` reducing over ``depth``."""
        self.reductions.append(Reduction(name, depth, phase))

    def build(self, activations, bank_start=None, banks=None):
        """The plan, with ACT regions ``(name, words)`` allocated by liveness.

        Parameters
        ----------
        activations : sequence of (str, int)
        bank_start : int, optional
            The first word of the second ACT bank; ``None`` for one bank.
        banks : dict, optional
            ACT region name -> the bank (0 or 1) it must lie in; only with
            ``bank_start``.

        Raises
        ------
        ValueError
            If a region is never used or a used region is not given.
        vitforge.errors.ConfigError
            If the regions pinned to bank 0 do not fit below ``bank_start``.
        """
        activations = [(name, -(-words // self.align) * self.align)
                       for name, words in activations]
        sizes = dict(activations)
        unknown = set(self.uses) - set(sizes)
        if unknown:
            raise ValueError(f"activation regions {sorted(unknown)} are used but not sized")
        for name in sizes:
            if name not in self.uses:
                raise ValueError(f"activation region {name} is sized but no phase uses it")
        banks = banks or {}
        live = {name: tuple(sorted(set(phases))) for name, phases in self.uses.items()}
        pinned = sorted(banks, key=lambda name: (-len(live[name]), -sizes[name]))
        rest = [name for name in sizes if name not in banks]
        lowest = {name: bank * bank_start for name, bank in banks.items()}
        layouts = [_first_fit(sizes, live, pinned + sorted(rest, key=key), lowest)
                   for key in (lambda name: (-len(live[name]), -sizes[name]),
                               lambda name: (-sizes[name], -len(live[name])))]
        starts = min(layouts, key=lambda starts: max(starts[name] + sizes[name]
                                                     for name in starts))
        for name, bank in banks.items():
            if bank == 0 and starts[name] + sizes[name] > bank_start:
                raise ConfigError(f"activation region {name} needs ACT words {starts[name]}.."
                                  f"{starts[name] + sizes[name] - 1}, beyond bank 0 (words "
                                  f"below {bank_start})")
        regions = [Allocation(Space.ACT, name, starts[name], words, live[name],
                              banks.get(name)) for name, words in activations]
        return MemoryPlan(lanes=self.lanes, phases=tuple(self.phases),
                          regions=tuple(regions + self.loads), operands=tuple(self.operands),
                          reductions=tuple(self.reductions), bank_start=bank_start)


def _first_fit(sizes, live, order, lowest):
    """Start of each region of ``sizes`` (name -> words), placed in ``order`` each at the
    lowest address from ``lowest[name]`` (0 if not given) clear of every placed region live
    in a common phase of ``live`` (name -> phases)."""
    starts = {}
    for name in order:
        phases = set(live[name])
        taken = sorted((starts[other], starts[other] + sizes[other]) for other in starts
                       if phases.intersection(live[other]))
        start = lowest.get(name, 0)
        for begin, end in taken:
            if start + sizes[name] <= begin:
                break
            start = max(start, end)
        starts[name] = start
    return starts
