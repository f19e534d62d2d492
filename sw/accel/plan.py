"""Memory plan: every scratchpad region of a program, where it lies and when it is live.

A program runs in *phases*, the sections the compiler names (``input``,
``block 0 attention``, ``block 0 mlp``, ..., ``output``); each phase runs on
the token count of its stage. A region is live from the first phase that
uses it through the last one. Addresses come from bump allocation: ACT
regions in the order they are declared, PRM and LNP regions from offset 0 at
each load. B operands take alternate halves of WGT, so the plan only needs
the largest. The compiler takes its addresses from the plan and
:func:`~vitforge.sw.accel.compiler.config_for` its scratchpad sizes, so the
two cannot disagree; the lifetimes are what liveness-based reuse of ACT will
build on (the allocation does not use them yet).
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
    """``words`` entries of scratchpad ``space`` from ``start``, live from phase
    ``first`` through phase ``last`` (indices into :attr:`MemoryPlan.phases`)."""

    space: Space
    name: str
    start: int
    words: int
    first: int
    last: int

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
    """A GEMM B operand of ``words`` WGT words, loaded into a half of WGT in ``phase``."""

    name: str
    words: int
    phase: int


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
        ACT regions in allocation order, then the PRM and LNP regions of each
        load in program order.
    operands : tuple of Operand
        The WGT operands in the order they are loaded.
    reductions : tuple of Reduction
        The reduction depths of the GEMMs, in program order.
    """

    lanes: int
    phases: tuple
    regions: tuple
    operands: tuple
    reductions: tuple

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
    def reduction_depth(self):
        """The deepest GEMM reduction: what ``k_max`` must hold."""
        return max(reduction.depth for reduction in self.reductions)

    def check(self, config):
        """Raise ``ValueError`` naming the first thing that does not fit ``config``.

        Reduction depths are checked first, then ACT regions, then the loads
        in program order.
        """
        for reduction in self.reductions:
            if reduction.depth > config.k_max:
                raise ConfigError(f"{reduction.name} {reduction.depth} exceeds "
                                  f"k_max={config.k_max}: a GEMM reduces over it")
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
    """

    def __init__(self, lanes):
        self.lanes = lanes
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

        ``entries`` are ``(name, count)`` pairs, laid out from entry 0.
        """
        start = 0
        for name, count in entries:
            self.loads.append(Allocation(Space(space), name, start, count, first, last))
            start += count

    def operand(self, phase, name, words):
        """A WGT operand of ``words`` words loaded in ``phase``."""
        self.operands.append(Operand(name, words, phase))

    def reduction(self, phase, name, depth):
        """A GEMM of ``phase`` reducing over ``depth``."""
        self.reductions.append(Reduction(name, depth, phase))

    def build(self, activations):
        """The plan, with ACT regions ``(name, words)`` allocated one after another.

        Raises
        ------
        ValueError
            If a region is never used or a used region is not given.
        """
        unknown = set(self.uses) - {name for name, _ in activations}
        if unknown:
            raise ValueError(f"activation regions {sorted(unknown)} are used but not sized")
        regions, start = [], 0
        for name, words in activations:
            if name not in self.uses:
                raise ValueError(f"activation region {name} is sized but no phase uses it")
            phases = self.uses[name]
            regions.append(Allocation(Space.ACT, name, start, words, min(phases), max(phases)))
            start += words
        return MemoryPlan(lanes=self.lanes, phases=tuple(self.phases),
                          regions=tuple(regions + self.loads), operands=tuple(self.operands),
                          reductions=tuple(self.reductions))
