"""Lowering of integer ViT layers to instructions, at the addresses of a memory plan.

Each phase runs on the token count of its stage (:class:`~.plan.Phase`):
GEMM ``m_tiles``, softmax length, score widths, LayerNorm tiles and
element-wise counts all follow it. After a ``threshold`` selector stage
(:mod:`.selection`) that count is the most the stage may leave, and those
fields are flagged to take the live count at run time (:attr:`Lowering.live`);
a ``topk`` stage leaves exactly its count.
Each weight load is emitted right after the GEMM or row instruction before it
(its host), into the other half of WGT, where the hardware runs it during that
host; a block's parameters load beside its first LayerNorm, its LayerNorm
parameters beside the residual ADD before it. With two ACT read ports the residual ADDs are
the GEMMs' write-back (:func:`fuses_residual`, GEMM ``residual``): FC2's parameters then
load beside proj's last GEMM and LN2's beside a GEMM of attention that hosts nothing else
(:meth:`Lowering.load_pending`). A layer whose weights take longer
to load than its host runs is cut into column chunks
(:meth:`Lowering.load_layer`): each chunk's GEMM hides the next chunk's load,
so few tokens (after pruning, or on a wide array) do not leave the GEMM engine
waiting for weights. Where WGT has room above its two halves, the classifier head's
weights load early, beside GEMMs that host no other load (:meth:`Lowering.prefetch_head`).
On a plan with two ACT banks the heads of a block overlap (:meth:`Lowering.attention`):
each softmax runs beside the GEMMs of its neighbours.

A layer with HP-pruned weights (``QuantizedLinear.sparse``, ``docs/sparsity.md``)
runs as ``LOAD_SPARSE`` and ``GEMM_SPARSE`` on its pattern re-cut into groups of
``array`` columns, when ``array`` divides the columns of the pattern's groups and
that takes fewer cycles on the phase's tokens (:func:`sparse_weights`: fewer GEMM
steps, or fewer weight words where the weight stream is the bound); otherwise it
runs dense on its decoded weights, and its name is listed in
:attr:`Lowering.dense_fallback`.
"""

from typing import NamedTuple

import numpy as np

from vitforge.hw.accel.isa import ISA, Instruction, Opcode, Space
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.hw.accel.config import TABLE_WORDS
from vitforge.hw.accel.eltwise import eltwise_cycles
from vitforge.sw.gemm.layout import aligned, pack_weights, tiles
from vitforge.sw.gemm.plan import command_cycles
from vitforge.sw.model.quantized import QuantizedLinear

from .cycles import FAR_START_DELAY, ISSUE_CYCLES, SIDE_START_DELAY, unit_cycles
from .selection import lower_select
from .vit_plan import LAYERNORM_BANKS, token_buffers

__all__ = ["Lowering", "LoadedLayer", "Residual", "fuses_residual", "sparse_weights"]


class _Preload:
    """Entries loading early into ``space`` from ``base``, in pieces: ``entries`` as
    :meth:`~.emitter.Emitter.load` takes them (WGT: words in weight layout,
    :func:`~vitforge.sw.gemm.layout.pack_weights`; PRM: bias, multiplier and shift arrays),
    the first ``done`` of them loaded so far."""

    def __init__(self, space, entries, base):
        self.space, self.entries, self.base, self.done = space, entries, base, 0

    def __len__(self):
        return len(self.entries) if self.space == Space.WGT else len(self.entries[0])

    @property
    def left(self):
        """Entries not loaded yet."""
        return len(self) - self.done

    def keep(self, count):
        """Keep only the first ``count`` entries (WGT)."""
        self.entries = self.entries[:count]

    def piece(self, end):
        """The entries from ``done`` to ``end``."""
        if self.space == Space.WGT:
            return self.entries[self.done:end]
        return [array[self.done:end] for array in self.entries]


class LoadedLayer(NamedTuple):
    """A linear layer run as GEMMs on column chunks, the first chunk's weights in WGT.

    ``chunks`` are ``(first column, end column)`` pairs in order; ``address``
    is the WGT word of the first chunk's weights. ``sparse`` is the layer's
    HPSparseWeight on groups of ``array`` columns when it runs as
    ``GEMM_SPARSE``, else ``None``.
    """

    layer: object
    chunks: tuple
    address: int
    sparse: object = None


def tile_cycles(config, layer, sparse, m_tiles):
    """``(load, gemm)``: cycles to load one column tile of ``layer``'s weights (external
    words, and a sparse tile's used record bytes, one per cycle) and of its GEMM on
    ``m_tiles`` token tiles (a dense one takes ``k_per_cycle`` entries per cycle, a sparse
    one one), its sparse weights ``sparse`` or ``None`` for dense ones."""
    if sparse is None:
        entries = layer.weight.shape[0]
        load = config.weight_words(entries)
    else:
        p = sparse.pattern
        entries = p.length
        load = p.kept_blocks * (1 + p.kept_rows) + config.weight_words(entries)
    issues = config.gemm.tile_issues(entries, sparse is not None)
    return load, m_tiles * max(issues, config.array)


def sparse_weights(layer, config, m_tiles, residual=False):
    """``layer``'s sparse weights on groups of ``config.array`` columns (a fully pruned
    layer's as one zero entry per group), or ``None`` where it runs dense: it has none, or
    ``array`` does not divide its groups' columns, or it would take no fewer cycles on
    ``m_tiles`` token tiles, or as many with a longer load. A column tile takes its GEMM's
    cycles or its weights' load's, whichever is longer (each chunk's GEMM hides the next
    chunk's load, :meth:`Lowering.load_layer`): GEMM_SPARSE takes one entry per step where
    GEMM takes ``k_per_cycle`` rows of K, and loads only the kept rows, so where the weight
    stream is the bound (few token tiles, or ``k_per_cycle`` 2) half the rows kept halves
    the layer, and where it is not the shorter load leaves the weight stream time for
    others. With ``residual`` (a residual ADD follows the layer) on two ACT read ports the
    sparse layer pays for that ADD, which only a dense GEMM's write-back absorbs
    (:func:`fuses_residual`)."""
    if layer.sparse is None or layer.sparse.pattern.cols % config.array:
        return None
    sparse = layer.sparse.for_cols(config.array).nonempty()
    unfused = 0
    if residual and config.act_read_ports == 2:
        unfused = eltwise_cycles(config, Opcode.ADD, m_tiles * layer.weight.shape[1])
    column_tiles = tiles(layer.weight.shape[1], config.array)
    dense_load, dense_gemm = tile_cycles(config, layer, None, m_tiles)
    sparse_load, sparse_gemm = tile_cycles(config, layer, sparse, m_tiles)
    dense_cycles = column_tiles * max(dense_load, dense_gemm)
    sparse_cycles = column_tiles * max(sparse_load, sparse_gemm) + unfused
    return sparse if (sparse_cycles, sparse_load) < (dense_cycles, dense_load) else None


def fuses_residual(layer, tokens, config):
    """Whether the residual ADD after ``layer``, run on ``tokens`` tokens, is its GEMMs'
    write-back (GEMM ``residual``, ``docs/isa.md``): with two ACT read ports, where the
    layer runs dense (GEMM_SPARSE has no residual)."""
    return config.act_read_ports == 2 and sparse_weights(
        layer, config, tiles(tokens, config.array), residual=True) is None


class Residual(NamedTuple):
    """The residual a GEMM adds to its results (GEMM ``residual``, ``docs/isa.md``): its
    first ACT word, laid out as the results, and the sum's multipliers and shift."""

    address: int
    r_multiplier: int
    c_multiplier: int
    shift: int

    @classmethod
    def of(cls, address, params, result_first=False):
        """The residual at ``address`` of the ADD ``params`` (:class:`ResidualParams`): the
        GEMM's result is the ADD's ``y`` (``x`` with ``result_first``)."""
        multipliers = (params.x_multiplier, params.y_multiplier)
        return cls(address, *(multipliers[::-1] if result_first else multipliers),
                   params.shift)

    def shifted(self, columns):
        """The residual of the results ``columns`` words on (a later column chunk)."""
        return self._replace(address=self.address + columns)


def _requant_entries(source, count):
    """PRM ``(bias, multiplier, shift)`` of a layer, or of a per-tensor requant on
    ``count`` channels (no bias)."""
    if isinstance(source, QuantizedLinear):
        return source.bias, source.multiplier, source.shift
    return (np.zeros(count, np.int64), np.full(count, source.multiplier),
            np.full(count, source.shift))


def _chunk_tiles(count, host, load_per_tile, gemm_per_tile, last=1):
    """Column tiles per chunk of a layer of ``count`` tiles whose first load runs beside a
    host of ``host`` cycles (``None``: alone), GEMM-bound chunks at least ``last`` tiles
    wide, as :meth:`Lowering.load_layer` describes."""
    if gemm_per_tile < load_per_tile:
        if host is None:
            return [count]
        sizes, budget = [], host
        while count:
            sizes.append(min(count, max(1, -(-budget // load_per_tile))))
            count -= sizes[-1]
            budget = sizes[-1] * gemm_per_tile
        return sizes
    first = 1 if host is None else max(1, (host - SIDE_START_DELAY - 2) // load_per_tile)
    first = max(first, min(last, count))
    sizes, left = [], count
    while left:
        sizes.append(min(left, first if not sizes else
                         max(1, sizes[-1] * gemm_per_tile // load_per_tile)))
        left -= sizes[-1]
    even = [count // len(sizes) + (i < count % len(sizes)) for i in range(len(sizes))]
    if even[0] <= first and all(later * load_per_tile <= earlier * gemm_per_tile
                                for earlier, later in zip(even, even[1:])):
        return even
    if sizes[-1] < sizes[-2]:           # growing chunks: the last two share the remainder
        pair = sizes[-2] + sizes[-1]
        sizes[-2:] = [-(-pair // 2), pair // 2]
    return sizes


class _DenseChunks(NamedTuple):
    """Cycles of a dense layer of depth ``k`` on ``m_tiles`` token tiles run in column
    chunks, its first load beside a host of ``host`` cycles (``None``: alone), then each
    chunk's GEMM hosting the next chunk's load and the last chunk's the load of one column
    tile of the layer after it (``following`` cycles)."""

    config: object
    k: int
    m_tiles: int
    host: object
    following: int

    def gemm(self, size):
        return unit_cycles(self.config, _gemm_shape(self.k, self.m_tiles,
                                                    size * self.config.array))

    def load(self, size):
        return _load_cycles(self.config, size * self.k)

    def cycles(self, sizes):
        """From the host's start to the last GEMM's retirement (fetch and issue of each
        chunk's GEMM included)."""
        first = self.load(sizes[0])
        total = first if self.host is None else max(self.host, SIDE_START_DELAY + first)
        loads = [self.load(size) for size in sizes[1:]] + [self.following]
        return total + sum(ISSUE_CYCLES + max(self.gemm(size), SIDE_START_DELAY + load)
                           for size, load in zip(sizes, loads))

    def hiding_tiles(self, count):
        """The fewest column tiles (at most ``count``) whose GEMM hides the load after
        the layer."""
        return next((size for size in range(1, count)
                     if self.gemm(size) >= SIDE_START_DELAY + self.following), count)


def _load_cycles(config, entries, space=Space.WGT):
    """Cycles of a LOAD of ``entries`` entries of ``space`` (the DMA's own count)."""
    return unit_cycles(config, Instruction(Opcode.LOAD, dict(
        space=space, dram_addr=0, spad_addr=0, count=entries)))


def _gemm_shape(k, m_tiles, n):
    """A GEMM of that shape at address 0 (what its cycles depend on)."""
    fields = dict.fromkeys(ISA[Opcode.GEMM].fields, 0)
    return Instruction(Opcode.GEMM, {**fields, "k": k, "m_tiles": m_tiles, "n": n})


class Lowering:
    """Emits ViT layers through ``emit`` (an :class:`~.emitter.Emitter`) over ``plan``.

    Parameters
    ----------
    config : AcceleratorConfig
    plan : MemoryPlan
    emit : Emitter
    dim : int
        Channels of the tokens.
    beside : set of int, optional
        The blocks whose FC2 may run the LayerNorm after it beside its last token tiles
        (:meth:`fc2_beside_norm`) where :meth:`pipelines_layernorm` allows; every block by
        default.
    """

    def __init__(self, config, plan, emit, dim, beside=None):
        self.config, self.plan, self.emit, self.dim = config, plan, emit, dim
        self.beside = beside
        #: The blocks whose FC2 runs the LayerNorm after it beside its last token tiles.
        self.layernorms_beside = []
        self.lanes = config.array
        self.phase = None
        self.tokens = self.token_tiles = None
        #: Whether token counts are live (a TOKEN_SELECT has run before).
        self.live = False
        #: The index and cycles of the last GEMM, LayerNorm or ADD emitted (a weight load
        #: right after it runs beside it).
        self.last_host = (None, 0)
        #: Names of the layers with sparse weights that run dense: ``array`` does not divide
        #: the columns of their pattern's groups.
        self.dense_fallback = []
        #: WGT words of each head's transposed V, from its transpose to its ``P V``.
        self.transposed = {}
        #: The classifier head's weights loading early (:meth:`prefetch_head`), or ``None``.
        self.head_weights = None
        #: The first WGT word reserved for FC2's first column tile (:meth:`reserve_fc2`), or
        #: ``None``; the block's tile loading early into it, or ``None``.
        self.fc2_base = self.fc2_weights = None
        #: The block's FC1 parameters loading early (:meth:`block`), or ``None``.
        self.fc1_params = None
        #: The block whose LN1 parameters the block before it loaded, or ``None``.
        self.early_ln1 = None
        #: The next block's attention parameters and QKV's first chunk loading early, beside
        #: FC2's last GEMMs and its LN1 (:meth:`fc2_into_layernorm`), or ``None``.
        self.next_params = self.next_qkv = None
        #: The block whose LN1 the block before it ran (``"head"``: the final norm), and
        #: where that block loaded its parameters (PRM region name -> first entry), or
        #: ``None``.
        self.early_block = self.early_prm = None
        #: The whole model (:class:`QuantizedVit`) whose final norm and head follow the
        #: blocks, or ``None`` (blocks alone).
        self.final = None
        #: A load (a callable that emits it) waiting for the first GEMM of attention that
        #: hosts nothing else (:meth:`load_pending`), or ``None``.
        self.pending_load = None

    def live_bits(self, opcode, *names):
        """``opcode``'s ``live`` field flagging ``names`` if counts are live, else 0."""
        order = [field for field, _ in ISA[opcode].live]
        return sum(1 << order.index(name) for name in names) if self.live else 0

    def enter(self, name):
        """Start phase ``name``: its instructions run on its stage's token count."""
        self.phase = self.plan.phase(name)
        self.emit.section = name
        self.tokens = self.plan.phases[self.phase].tokens
        self.token_tiles = tiles(self.tokens, self.lanes)

    def act(self, name):
        """First word of ACT region ``name``."""
        return self.plan.region(Space.ACT, name).start

    def _loaded_run(self, space, names, phase=None):
        """The regions of ``space`` named ``names``: a run of those the phase (or ``phase``)
        loads, in entry order (one LOAD fills them)."""
        phase = self.phase if phase is None else phase
        regions = [region for region in self.plan.loaded_in(space, phase)
                   if region.name in names]
        if [region.name for region in regions] != list(names) or any(
                earlier.end != later.start for earlier, later in zip(regions, regions[1:])):
            raise RuntimeError(f"{space.name} regions {list(names)} are not a run of those "
                               f"loaded in {self.emit.section}")
        return regions

    def load_params(self, sources):
        """LOAD PRM entries of the phase: ``sources`` maps the name of each PRM region to
        load (a run of the phase's, in entry order) to a layer or per-tensor requant.
        Returns each region's first entry by name."""
        preload, starts = self.preload_params(sources)
        self.finish_preload(preload)
        return starts

    def preload_params(self, sources, phase=None):
        """The PRM entries :meth:`load_params` loads (those of ``phase``, by default the
        current one), as a :class:`_Preload` to load later (in pieces, :meth:`load_early`),
        and each region's first entry by name."""
        regions = self._loaded_run(Space.PRM, sources, phase)
        entries = [_requant_entries(sources[region.name], region.words) for region in regions]
        merged = [np.concatenate([entry[i] for entry in entries]) for i in range(3)]
        return (_Preload(Space.PRM, merged, regions[0].start),
                {region.name: region.start for region in regions})

    def load_layernorms(self, sources, phase=None):
        """LOAD LNP entries of the phase (or of a later ``phase``, early) from ``sources``
        (region name -> LayerNorm parameters: a run of the phase's, in entry order); returns
        each region's first entry by name."""
        regions = self._loaded_run(Space.LNP, sources, phase)
        gamma = np.concatenate([sources[region.name].gamma for region in regions])
        beta = np.concatenate([sources[region.name].beta for region in regions])
        self.emit.load(Space.LNP, (gamma, beta), regions[0].start,
                       regions[-1].end - regions[0].start)
        return {region.name: region.start for region in regions}

    def load_pending(self):
        """Emit the load that waits for a host in attention (:attr:`pending_load`), if any:
        right after a GEMM that hosts nothing else."""
        if self.pending_load is not None:
            load, self.pending_load = self.pending_load, None
            load()

    def gemm(self, a, a_width, b, b_stride, c, c_width, p, k, n, m_tiles=None, rows=None,
             live=(), depth=None, gelu=False, b_act=False, residual=None):
        """A GEMM on the stage's tokens (or ``m_tiles`` tiles of which ``rows`` are real);
        ``live`` names ``n`` or ``k`` when they are the token count; with ``gelu`` its results
        go through the GELU table last loaded into TBL; with ``b_act`` B is in ACT; with
        ``residual`` (a :class:`Residual`) its results are summed with the residual's.

        With ``depth`` it is a GEMM_SPARSE: ``k`` entries (WGT and IDX words) per column
        tile, over A tiles of ``depth`` words (the dense reduction depth).
        """
        opcode, own_fields = (Opcode.GEMM, {"b_act": int(b_act)}) if depth is None else \
            (Opcode.GEMM_SPARSE, {"depth": depth})
        if residual is not None:
            own_fields.update(residual=1, r_addr=residual.address,
                              r_multiplier=residual.r_multiplier,
                              c_multiplier=residual.c_multiplier, r_shift=residual.shift)
        flagged = (*live, "m_tiles") if m_tiles is None else live
        fields = dict(a_addr=a, a_stride=a_width, b_addr=b, b_stride=b_stride, c_addr=c,
                      c_stride=c_width, p_addr=p, k=k, m_tiles=m_tiles or self.token_tiles, n=n,
                      gelu=int(gelu), **own_fields)
        self.emit(opcode, **fields, live=self.live_bits(opcode, *flagged))
        real = rows or self.tokens
        self.emit.macs += real * k * n
        self.emit.dense_macs += real * (depth or k) * n
        descriptor = GemmDescriptor.from_fields(fields, sparse=int(depth is not None))
        descriptor.check(self.config.gemm)
        self.last_host = (len(self.emit.instructions) - 1,
                          command_cycles(self.config.gemm, descriptor))

    def sparse_weight(self, layer, name, m_tiles, residual=False):
        """:func:`sparse_weights` of ``layer`` on ``m_tiles`` token tiles (a residual ADD
        after it if ``residual``); where it has sparse weights that run dense, ``name``
        joins :attr:`dense_fallback`."""
        sparse = sparse_weights(layer, self.config, m_tiles, residual)
        if sparse is None and layer.sparse is not None:
            self.dense_fallback.append(name)
        return sparse

    def _load_columns(self, layer, sparse, start, end):
        """LOAD columns ``start..end`` of ``layer``'s weights (sparse ones if ``sparse``) into
        the next half of WGT; returns their WGT address."""
        if sparse is None:
            return self.emit.load_weights(layer.weight[:, start:end])
        return self.emit.load_sparse_weights(sparse.columns(start, end))

    def load_layer(self, layer, name, m_tiles=None, then=None, residual=False):
        """LOAD ``layer``'s weights, or the first of its column chunks, into the next half of
        WGT; returns the :class:`LoadedLayer` that :meth:`linear` runs. ``name`` is what
        :attr:`dense_fallback` calls the layer (sparse weights that run dense); ``residual``
        says that a residual ADD follows it (:func:`sparse_weights`).

        Right after a GEMM, LayerNorm or ADD (a host) the load runs beside it. Where a
        tile's GEMM takes at least as long as its load (GEMM-bound), the first chunk is as
        wide as the host hides in whole tiles of ``array`` columns (one tile, its load
        alone, when no host is before it), each next chunk as wide as the GEMM of the
        chunk before it hides, and then the columns spread evenly over that many chunks,
        wider first (where growing chunks do not allow that, the last two share what is
        left): no load outlasts its host, and the last chunk is not a sliver (its GEMM
        hosts the next layer's first load). With ``then``, the layer loaded beside this
        dense one's last GEMM, the chunks may instead be as wide as hides one column tile
        of it (a deeper layer's), where that takes fewer cycles (:class:`_DenseChunks`).
        Where a tile's GEMM is shorter than its load (weight-bound: a ``k_per_cycle``
        array, or few tokens) the first chunk is rounded up instead (a stall of less than
        a tile's load) and each next as wide as the GEMM before it hides, rounded up: the
        chunks narrow, and every GEMM still hosts a load at least as long as itself, so no
        GEMM time goes unused while the weights are the bottleneck; with no host before it
        the layer is one chunk. Chunks of sparse weights are whole column tiles too. No
        chunk is wider than a WGT half holds.
        """
        n = layer.weight.shape[1]
        lanes = self.lanes
        m_tiles = m_tiles or self.token_tiles
        sparse = self.sparse_weight(layer, name, m_tiles, residual)
        load_per_tile, gemm_per_tile = tile_cycles(self.config, layer, sparse, m_tiles)
        index, cycles = self.last_host
        beside = index is not None and index == len(self.emit.instructions) - 1
        count, host = tiles(n, lanes), cycles if beside else None
        sizes = _chunk_tiles(count, host, load_per_tile, gemm_per_tile)
        if then is not None and sparse is None:
            timing = _DenseChunks(self.config, layer.weight.shape[0],
                                  m_tiles, host,
                                  _load_cycles(self.config, then.weight.shape[0]))
            wider = _chunk_tiles(count, host, load_per_tile, gemm_per_tile,
                                 timing.hiding_tiles(count))
            sizes = min(sizes, wider, key=timing.cycles)
        entries = layer.weight.shape[0] if sparse is None else sparse.pattern.length
        chunks = self._column_chunks(sizes, entries, n)
        return LoadedLayer(layer, chunks, self._load_columns(layer, sparse, *chunks[0]), sparse)

    def prefetch_head(self, layer, least_half):
        """Load the classifier head's weights (``layer``) early, where WGT has room for them
        above two halves of at least ``least_half`` words (the plan's
        ``least_weight_words``: layers then load in chunks no wider than a half holds,
        :meth:`load_layer`): into words reserved for them, in pieces as long as the GEMMs
        that host no other load hide (each QKV's last, proj's last where a residual ADD
        follows it rather than FC2's parameters, the last FC2's) and in the far slot beside
        attention's GEMMs (:meth:`load_early`, after the loads needed sooner); the rest
        before the head's GEMM (:meth:`head`). Otherwise the head loads as every layer does
        (its whole weights stream after the final LayerNorm, with no GEMM to hide them).
        Dense heads only."""
        if layer.sparse is not None:
            return
        words = pack_weights(layer.weight, self.lanes)
        base = self._reserve(len(words), least_half)
        if base is not None:
            self.head_weights = _Preload(Space.WGT, words, base)

    def reserve_fc2(self, blocks, least_half):
        """Reserve WGT words for FC2's first column tile above two halves of at least
        ``least_half`` words, where WGT has room (after the head's, :meth:`prefetch_head`),
        every block's FC2 is dense and the weight stream binds FC1 (on the first block's
        tokens a column tile's GEMM takes less than one and a half times its load): each
        block then loads that tile early, beside its attention's GEMMs
        (:meth:`preload_beside`, :meth:`preload_far`), and FC1's last GEMM need not hide
        it. Where the stream binds, FC1's chunks stay as narrow as their hosts hide, and the
        last one hides no deeper tile (at five token tiles on 40 lanes, DeiT-S's FC1 chunk of
        three column tiles runs 2,929 cycles and FC2's tile loads in 3,842); where the GEMMs
        bind, it does, and the words are better left to the halves."""
        tokens = self.plan.phases[self.plan.phase("block 0 mlp")].tokens
        load, gemm = tile_cycles(self.config, blocks[0].fc1, None, tiles(tokens, self.lanes))
        if any(block.fc2.sparse is not None for block in blocks) or 2 * gemm >= 3 * load:
            return
        self.fc2_base = self._reserve(max(block.fc2.weight.shape[0] for block in blocks),
                                      least_half)

    def _reserve(self, words, least_half):
        """The first of ``words`` WGT words reserved above the halves, or ``None`` (nothing
        reserved) where the halves would then hold fewer than ``least_half`` words each."""
        if (self.emit.weight_end - words) // 2 < least_half:
            return None
        return self.emit.reserve_weights(words)

    def load_early(self, budget):
        """LOAD as many entries of the preload needed first (the block's FC2 tile, FC1's
        parameters, the next block's attention parameters and first QKV chunk, then the
        head's weights) as take at most ``budget`` cycles."""
        waiting = [preload for preload in (self.fc2_weights, self.fc1_params, self.next_params,
                                           self.next_qkv, self.head_weights)
                   if preload is not None and preload.left]
        if not waiting:
            return
        preload = waiting[0]
        self.finish_preload(preload, preload.done + self._fitting(preload, budget))

    def _fitting(self, preload, budget):
        """The most entries of ``preload`` not loaded yet that load within ``budget``
        cycles."""
        low, high = 0, preload.left
        while low < high:
            middle = (low + high + 1) // 2
            if _load_cycles(self.config, middle, preload.space) <= budget:
                low = middle
            else:
                high = middle - 1
        return low

    def finish_preload(self, preload, end=None):
        """LOAD ``preload``'s entries up to ``end`` (all by default) after those loaded so
        far."""
        end = len(preload) if end is None else end
        if end > preload.done:
            self.emit.load(preload.space, preload.piece(end), preload.base + preload.done,
                           end - preload.done)
            preload.done = end

    def preload_beside(self):
        """Load early (:meth:`load_early`) beside the GEMM just emitted, which hosts nothing
        else, as much as it hides (nothing if no GEMM was just emitted)."""
        index, cycles = self.last_host
        if index == len(self.emit.instructions) - 1:
            self.load_early(cycles - SIDE_START_DELAY)

    def preload_far(self):
        """Load early beside the GEMM before the row instruction just emitted beside it (the
        hardware's far slot, :data:`~vitforge.hw.accel.isa.FAR_HOSTS`), as much as fits
        before both retire (nothing if that host is not a GEMM)."""
        index, cycles = self.last_host
        instructions = self.emit.instructions
        if index == len(instructions) - 2:
            row = Instruction(*instructions[-1])
            retires = max(cycles, SIDE_START_DELAY + unit_cycles(self.config, row))
            self.load_early(retires - FAR_START_DELAY)

    def preloaded_layer(self, layer, preload, m_tiles=None):
        """``layer`` (dense) as a :class:`LoadedLayer` whose first chunk is ``preload``'s
        column tiles, what is left of them loaded now (beside the GEMM just emitted), the
        other chunks as :meth:`load_layer` sizes them beside the first's GEMM."""
        self.finish_preload(preload)
        k, n = layer.weight.shape
        m_tiles = m_tiles or self.token_tiles
        first = len(preload) // k
        load_per_tile, gemm_per_tile = tile_cycles(self.config, layer, None, m_tiles)
        host = unit_cycles(self.config, _gemm_shape(k, m_tiles, first * self.lanes))
        rest = tiles(n, self.lanes) - first
        sizes = [first, *(_chunk_tiles(rest, host, load_per_tile, gemm_per_tile) if rest else ())]
        return LoadedLayer(layer, self._column_chunks(sizes, k, n), preload.base)

    def _column_chunks(self, sizes, entries, n):
        """``(first, end)`` columns of chunks of ``sizes`` column tiles of ``entries`` WGT
        words each, none wider than a WGT half holds (less than the whole layer where words
        above the halves are reserved, :meth:`prefetch_head`)."""
        widest = max(1, self.emit.weight_end // 2 // entries)
        sizes = [size // parts + (part < size % parts) for size in sizes
                 for parts in [-(-size // widest)] for part in range(parts)]
        edges = np.cumsum([0, *sizes]) * self.lanes
        return tuple((int(start), min(int(end), n)) for start, end in zip(edges, edges[1:]))

    def linear(self, loaded, src, src_width, dst, prm, m_tiles=None, rows=None, gelu=False,
               residual=None, between=None):
        """A :class:`LoadedLayer` on ``src`` into ``dst``, parameters from PRM ``prm``: one
        GEMM (GEMM_SPARSE) per chunk, each next chunk's weights loaded beside the one
        before; with ``gelu`` the results go through the GELU table, with ``residual`` (a
        :class:`Residual` laid out as ``dst``) they are summed with its words. With
        ``between`` the last chunk runs one GEMM per token tile, each followed by
        ``between(tile)`` (what runs beside it)."""
        layer, sparse = loaded.layer, loaded.sparse
        k, n = layer.weight.shape
        entries, depth = (k, None) if sparse is None else (sparse.pattern.length, k)
        address = loaded.address
        for index, (start, end) in enumerate(loaded.chunks):
            last = index + 1 == len(loaded.chunks)
            pieces = [(0, None)] if between is None or not last else \
                [(tile, 1) for tile in range(self.token_tiles)]
            for tile, piece_tiles in pieces:
                offset = tile * n
                self.gemm(src + tile * src_width, src_width, address, entries,
                          dst + offset + start, n, prm + start, entries, end - start,
                          piece_tiles or m_tiles,
                          min(self.lanes, self.tokens - tile * self.lanes) if piece_tiles
                          else rows, depth=depth, gelu=gelu,
                          residual=residual and residual.shifted(offset + start))
                if piece_tiles:
                    between(tile)
            if not last:
                address = self._load_columns(layer, sparse, *loaded.chunks[index + 1])

    def layernorm(self, params, lnp_addr, src, dst, channels=None, m_tiles=None,
                  beside=False):
        """Row-parallel LayerNorm of the stage's tokens (or of ``m_tiles`` tiles from
        ``src``), over the first ``channels`` (all by default) of each token's ``dim``
        words; ``beside`` the GEMM emitted right before it, or a host itself."""
        fields = dict(src=src, src_stride=self.dim, dst=dst, dst_stride=self.dim,
                      m_tiles=m_tiles or self.token_tiles, channels=channels or self.dim,
                      lnp_addr=lnp_addr, eps=params.eps, multiplier=params.multiplier,
                      shift=params.shift,
                      live=0 if m_tiles else self.live_bits(Opcode.LAYERNORM, "m_tiles"))
        if beside:
            self.emit(Opcode.LAYERNORM, **fields, beside=1)
        else:
            self.row_host(Opcode.LAYERNORM, **fields)

    def add(self, x, y, dst, residual):
        """Residual ADD of the stage's tokens."""
        self.row_host(Opcode.ADD, x=x, y=y, dst=dst, count=self.token_tiles * self.dim,
                      tile_words=self.dim, x_multiplier=residual.x_multiplier,
                      y_multiplier=residual.y_multiplier, shift=residual.shift,
                      live=self.live_bits(Opcode.ADD, "count"))

    def row_host(self, opcode, **fields):
        """Emit a row instruction that a weight load right after it may run beside (its
        cycles as compiled, the most a live token count leaves)."""
        self.emit(opcode, **fields)
        self.last_host = (len(self.emit.instructions) - 1,
                          unit_cycles(self.config, Instruction(opcode, fields)))

    def overlaps(self, block):
        """Whether ``block``'s heads overlap (:meth:`attention`): the plan has two ACT banks,
        the block more than one head, and the token counts are not live (an instruction
        beside a GEMM runs as written)."""
        return self.plan.bank_start is not None and block.heads > 1 and not self.live

    @property
    def probability_stride(self):
        """Words per token row of ``probabilities``, the A operand of ``P V``: the stage's
        tokens, rounded up to the aligned groups a ``k_per_cycle`` GEMM reads."""
        return aligned(self.tokens, self.config.k_per_cycle)

    def head_buffer(self, name, head, block):
        """First word of ``head``'s buffer of ACT region ``name`` (one of
        :data:`~.vit_plan.HEAD_BUFFERS`): heads alternate between its two halves when
        ``block``'s heads overlap."""
        region = self.plan.region(Space.ACT, name)
        return region.start + (head % 2 * region.words // 2 if self.overlaps(block) else 0)

    def attention(self, block, score_prm, context_prm):
        """``softmax(Q_h K_h^T) V_h`` of every head ``h`` into its columns of ``context``.

        Head by head, or, when they overlap (:meth:`overlaps`), each softmax in pieces
        (:meth:`softmax_pieces`) beside the hosts :meth:`attention_schedule` gives it
        between its scores and its ``P V``. Head 0's own ``Q K^T`` may run as two GEMMs by
        token tiles, with the first piece of its softmax beside the second
        (:meth:`first_head_split`). Scores and probabilities alternate between two
        buffers, and the plan's banks keep each pair on different ports
        (:mod:`.vit_plan`).
        """
        heads = block.heads
        if not self.overlaps(block):
            for head in range(heads):
                self.head_scores(block, head, score_prm)
                self.head_softmax(block, head)
                self.head_values(block, head)
                self.head_product(block, head, context_prm)
            return
        *score_hosts, values, context = self.attention_host_cycles(block)
        cycles = {"scores": tuple(score_hosts), "values": (values,), "product": (context,)}
        emit = {"scores": lambda head, sides: self.head_scores(block, head, score_prm, sides),
                "values": lambda head, sides: self.head_values(block, head, *sides),
                "product": lambda head, sides: self.head_product(block, head, context_prm,
                                                                 *sides)}

        def hosts(steps):
            return [host for kind, _ in steps for host in cycles[kind]]

        def lost(schedule):
            """(cycles lost, instructions) of the softmax pieces of ``schedule``."""
            head_0 = self.first_head_split(block, hosts(schedule[0]))[1]
            return tuple(map(sum, zip(head_0, *(self.best_split(hosts(steps))[0]
                                                for steps in schedule[1:]))))

        schedule = min((self.attention_schedule(heads, early) for early in
                        (False, True)[:1 + (heads >= 3 and not self.copies_keys)]), key=lost)
        done, _ = self.first_head_split(block, hosts(schedule[0]))
        self.head_scores(block, 0, score_prm,
                         self.score_sides((0, (0, done)) if done else None),
                         split=done + 1 if done else None)
        for head, steps in enumerate(schedule):
            first = done if head == 0 else 0
            pieces = [(head, tiles)
                      for tiles in self.softmax_pieces(hosts(steps), first)]
            for kind, host in steps:
                count = len(cycles[kind])
                emit[kind](host, pieces[:count])
                pieces = pieces[count:]
        self.head_product(block, heads - 1, context_prm)

    @staticmethod
    def attention_schedule(heads, early=False):
        """Per head ``h``, the hosts its softmax runs beside (after head 0's, which may
        also run beside part of its own ``Q K^T``): ``(kind, head)`` of ``"scores"`` (the
        head's ``K^T`` copy and ``Q K^T``), ``"values"`` (its ``V`` transpose) and
        ``"product"`` (its ``P V``), in the order they run.

        Head 0's beside head 1's scores; every other head ``h``'s beside head ``h + 1``'s
        scores and head ``h - 1``'s values and product; the last head's beside the values
        and product of the head before it and its own values; the last head's product then
        runs alone. ``early`` (three heads or more, and no ``K^T`` copies, which would take
        the WGT half of head 0's ``V``) moves head 0's values before head 1's scores, to
        host head 0's softmax, which otherwise has the fewest hosts."""
        schedule = [[("scores", 1)]]
        schedule += [[("scores", head + 1), ("values", head - 1), ("product", head - 1)]
                     for head in range(1, heads - 1)]
        schedule.append([("values", heads - 2), ("product", heads - 2), ("values", heads - 1)])
        if early:
            schedule[0].insert(0, ("values", 0))
            schedule[1].remove(("values", 0))
        return schedule

    def first_head_split(self, block, hosts):
        """How many token tiles of head 0's softmax run beside its own ``Q K^T``, 0 for none,
        and the ``(cycles lost, instructions)`` of that choice.

        With ``a`` of them, ``Q K^T`` runs as two GEMMs, its first ``a + 1`` token tiles and
        then the rest, and the piece of the first ``a`` tiles runs beside the second (it
        carries the maxima of tile ``a``, which the first computed); the other tiles go
        beside ``hosts`` (their cycles: head 0's in :meth:`attention_schedule`). The choice
        with the fewest cycles lost (the pieces' stalls and the second GEMM's), then the
        fewest instructions."""
        count, head_dim, tokens = self.token_tiles, block.head_dim, self.tokens

        def gemm(m_tiles):
            return unit_cycles(self.config, _gemm_shape(head_dim, m_tiles, tokens))

        options = {0: self.best_split(hosts)[0]}
        for done in range(1, count - 1):
            second = gemm(count - done - 1)
            stall, pieces = self.piece_cost(0, done, second)
            (rest, more), _ = self.best_split(hosts, done)
            extra = gemm(done + 1) + second - gemm(count)
            options[done] = (stall + rest + extra, pieces + more + 1)
        done = min(options, key=options.get)
        return done, options[done]

    @property
    def copies_keys(self):
        """Whether ``Q K^T`` reads ``K^T`` from a copy in WGT (COPY_TO_WGT): with one ACT
        read port; with two it reads ``K`` where the QKV GEMM wrote it (``b_act``)."""
        return self.config.act_read_ports == 1

    def score_sides(self, beside_scores=None):
        """The softmax pieces beside a head's ``K^T`` copy (:attr:`copies_keys`) and its
        ``Q K^T``: nothing beside the copy, ``beside_scores`` beside ``Q K^T``."""
        return (None,) * self.copies_keys + (beside_scores,)

    def attention_host_cycles(self, block):
        """Cycles of a head's ``K^T`` copy (:attr:`copies_keys`), ``Q K^T``, ``V`` transpose
        and ``P V`` (the same for every head of ``block``)."""
        tokens, head_dim, token_tiles = self.tokens, block.head_dim, self.token_tiles
        copy = Instruction(Opcode.COPY_TO_WGT, dict(tiles=token_tiles, words=head_dim))
        return [unit_cycles(self.config, instruction) for instruction in (
            *(copy,) * self.copies_keys,
            _gemm_shape(head_dim, token_tiles, tokens),
            Instruction(Opcode.TRANSPOSE_TO_WGT, dict(
                token_tiles=token_tiles, channel_tiles=tiles(head_dim, self.lanes))),
            _gemm_shape(tokens, token_tiles, head_dim))]

    def piece_cost(self, first, count, host):
        """``(stall, instructions)`` of a softmax piece of ``count`` token tiles from tile
        ``first`` beside a host of ``host`` cycles: how long it outlasts the host
        (``stall``, :mod:`.cycles`), and 1 (0 for an empty piece). A piece after the first
        resumes from the one before it (:meth:`resumes`)."""
        if not count:
            return 0, 0
        softmax = unit_cycles(self.config, Instruction(Opcode.SOFTMAX, dict(
            m_tiles=count, length=self.tokens, resume=self.resumes(first))))
        return max(0, SIDE_START_DELAY + softmax - host), 1

    def best_split(self, hosts, first=0, end=None):
        """The split of a head's softmax tiles ``first`` to ``end`` (the last by default) over
        ``hosts`` (their cycles, in order) whose pieces outlast their hosts by the fewest
        cycles in all, and of those the one with the fewest instructions (a small dynamic
        program): ``((stall, instructions), counts)``, the tiles of each host's piece."""
        end = self.token_tiles if end is None else end
        # best[t]: (stall, pieces) of the hosts so far taking tiles first..t, and the counts.
        best = {first: ((0, 0), ())}
        for host in hosts:
            best = {taken: min(((stall + extra, pieces + more), counts + (taken - done,))
                               for done, ((stall, pieces), counts) in best.items()
                               if done <= taken
                               for extra, more in [self.piece_cost(done, taken - done, host)])
                    for taken in range(first, end + 1)}
        return best[end]

    def softmax_pieces(self, hosts, first=0, end=None):
        """A head's softmax tiles ``first`` to ``end`` split over ``hosts`` by
        :meth:`best_split`: per host the ``(first, end)`` of its piece, or ``None`` for
        none."""
        counts, split = self.best_split(hosts, first, end)[1], []
        for count in counts:
            split.append((first, first + count) if count else None)
            first += count
        return split

    def tile_rows(self, first, end):
        """The stage's tokens in token tiles ``first`` to ``end``."""
        return min(end * self.lanes, self.tokens) - first * self.lanes

    def head_scores(self, block, head, score_prm, sides=None, split=None):
        """``Q_h K_h^T`` into ``head``'s scores, ``K_h^T`` from a copy into the next half of
        WGT made first (:attr:`copies_keys`) or from K's words in ACT; after each of the
        two, the softmax piece of ``sides`` (:meth:`score_sides`: ``(head, tiles)`` or
        ``None``) beside it. With ``split`` (a token tile), ``Q K^T`` runs as two GEMMs, the
        tiles before ``split`` and the rest, and the last piece goes beside the second."""
        dim, head_dim, tokens = self.dim, block.head_dim, self.tokens
        sides = sides or self.score_sides()
        q = self.act("qkv") + head * head_dim
        keys, keys_stride = q + dim, 3 * dim
        if self.copies_keys:
            keys, keys_stride = self.emit.take_weight_half(), head_dim
            self.emit(Opcode.COPY_TO_WGT, src=q + dim, src_stride=3 * dim, dst=keys,
                      tiles=self.token_tiles, words=head_dim,
                      live=self.live_bits(Opcode.COPY_TO_WGT, "tiles"))
            self.head_softmax_beside(block, sides[0])
        scores = self.head_buffer("scores", head, block)
        parts = ((0, self.token_tiles),) if split is None else \
            ((0, split), (split, self.token_tiles))
        for index, (first, end) in enumerate(parts):
            self.gemm(q + first * 3 * dim, 3 * dim, keys, keys_stride, scores + first * tokens,
                      tokens, score_prm, head_dim, tokens,
                      m_tiles=None if split is None else end - first,
                      rows=None if split is None else self.tile_rows(first, end), live=("n",),
                      b_act=not self.copies_keys)
            if index + 1 < len(parts) or sides[-1] is None:
                self.load_pending()
        self.head_softmax_beside(block, sides[-1])

    def head_softmax_beside(self, block, side):
        """The softmax piece ``side`` (``(head, tiles)``, or ``None`` for nothing) beside the
        instruction emitted right before it."""
        if side is not None and side[1] is not None:
            self.head_softmax(block, side[0], beside=True, tiles=side[1])
            self.preload_far()

    def resumes(self, first):
        """Whether a softmax piece from token tile ``first`` resumes from the piece before
        it (the maxima of its first tile and the exp table, ``docs/isa.md``): when there
        is one (``first > 0``) and the scratchpad has the second read port that finds
        them."""
        return int(first > 0 and self.config.act_read_ports == 2)

    def head_softmax(self, block, head, beside=False, tiles=None):
        """The softmax of ``head``'s scores into its probabilities, its token tiles
        ``tiles`` (``(first, end)``; all by default), ``beside`` the instruction emitted
        right before it. A piece that ends before the last tile carries the maxima of the
        next one to the piece after it (:meth:`resumes`)."""
        tokens, e = self.tokens, block.softmax
        stride = self.probability_stride
        first, end = tiles or (0, self.token_tiles)
        carry = self.resumes(end) if end < self.token_tiles else 0
        self.emit(Opcode.SOFTMAX, src=self.head_buffer("scores", head, block) + first * tokens,
                  src_stride=tokens,
                  dst=self.head_buffer("probabilities", head, block) + first * stride,
                  dst_stride=stride, m_tiles=end - first, length=tokens, ratio=e.ratio,
                  alpha=e.alpha, beta=e.beta, gamma=e.gamma,
                  probability_shift=block.probability_shift, beside=int(beside),
                  carry=carry, resume=self.resumes(first),
                  live=self.live_bits(Opcode.SOFTMAX, "m_tiles", "length"))

    def head_values(self, block, head, side=None):
        """V_h transposed into the next half of WGT, for its ``P V``; then the softmax piece
        ``side`` (``(head, tiles)`` or ``None``) beside it."""
        dim, head_dim = self.dim, block.head_dim
        self.transposed[head] = values = self.emit.take_weight_half()
        self.emit(Opcode.TRANSPOSE_TO_WGT, src=self.act("qkv") + head * head_dim + 2 * dim,
                  src_stride=3 * dim, dst=values, dst_stride=self.token_tiles * self.lanes,
                  token_tiles=self.token_tiles, channel_tiles=tiles(head_dim, self.lanes),
                  live=self.live_bits(Opcode.TRANSPOSE_TO_WGT, "token_tiles"))
        self.head_softmax_beside(block, side)

    def head_product(self, block, head, context_prm, side=None):
        """``P_h V_h`` into ``head``'s columns of ``context``, from V_h as
        :meth:`head_values` transposed it; then the softmax piece ``side`` beside it."""
        dim, head_dim, tokens = self.dim, block.head_dim, self.tokens
        self.gemm(self.head_buffer("probabilities", head, block), self.probability_stride,
                  self.transposed.pop(head), self.token_tiles * self.lanes,
                  self.act("context") + head * head_dim, dim, context_prm, tokens, head_dim,
                  live=("k",))
        self.head_softmax_beside(block, side)

    def block(self, index, block, qkv, following=None, flips=0, selects_next=False):
        """Encoder block ``index`` from its source token buffer to its result buffer
        (:func:`~.vit_plan.token_buffers` after ``flips`` selector stages).

        ``qkv`` is its QKV layer, loaded (:meth:`load_layer`); returns
        ``following``'s, loaded beside this block's last GEMM. Where FC1's last GEMM hosts
        no load (FC2's first tile loaded early) and no selector stage (``selects_next``)
        comes before ``following``, it hosts the load of ``following``'s LN1 parameters,
        which would otherwise have no host.
        """
        name, dim = f"block {index}", self.dim
        source, result = (self.act(buffer) for buffer in token_buffers(index, flips))
        normalized, x1 = self.act("normalized"), self.act("x1")
        self.enter(f"{name} attention")
        proj_fused = fuses_residual(block.proj, self.tokens, self.config)
        ln1, ln2 = {f"{name} ln1": block.ln1}, {f"{name} ln2": block.ln2}
        early_ln1, self.early_ln1 = self.early_ln1, None
        early = self.early_block == name
        sources = {**({} if early_ln1 == name else ln1), **({} if proj_fused else ln2)}
        lnp = self.load_layernorms(sources) if sources else {}
        if early_ln1 == name:
            lnp[f"{name} ln1"] = self.plan.region(Space.LNP, f"{name} ln1").start
        if proj_fused:
            # No residual ADD before LN1 hosts the LayerNorm parameters: LN2's load beside
            # a GEMM of attention.
            self.pending_load = lambda: lnp.update(self.load_layernorms(ln2))
        self.emit.load(Space.TBL, block.gelu_table, 0, TABLE_WORDS)
        if early:
            prm = self.early_prm
        else:
            self.layernorm(block.ln1, lnp[f"{name} ln1"], source, normalized)
            prm = self.load_params(self.attention_params(block, name, proj_fused))
        if proj_fused:
            # FC1's parameters load with attention's GEMMs (:meth:`load_early`), not beside
            # LN1, which they would outlast.
            self.fc1_params, fc1_prm = self.preload_params({f"{name} fc1": block.fc1})
            prm.update(fc1_prm)
        if self.fc2_base is not None:
            self.fc2_weights = _Preload(Space.WGT, pack_weights(
                block.fc2.weight[:, :self.lanes], self.lanes), self.fc2_base)
        self.linear(qkv, normalized, dim, self.act("qkv"), prm[f"{name} qkv"])
        self.preload_beside()
        self.attention(block, prm[f"{name} score"], prm[f"{name} context"])
        self.load_pending()
        proj = self.load_layer(block.proj, f"{name} proj", residual=True)
        if proj_fused:
            self.linear(proj, self.act("context"), dim, x1, prm[f"{name} proj"],
                        residual=Residual.of(source, block.residual1))
            self.finish_preload(self.fc1_params)
            self.fc1_params = None
            prm.update(self.load_params({f"{name} fc2": block.fc2}))
            self.enter(f"{name} mlp")
        else:
            self.linear(proj, self.act("context"), dim, self.act("sublayer"),
                        prm[f"{name} proj"])
            self.preload_beside()
            self.enter(f"{name} mlp")
            self.add(source, self.act("sublayer"), x1, block.residual1)
            prm.update(self.load_params({f"{name} fc1": block.fc1}))
        self.layernorm(block.ln2, lnp[f"{name} ln2"], x1, normalized)
        early, self.fc2_weights = self.fc2_weights, None
        fc1 = self.load_layer(block.fc1, f"{name} fc1", then=block.fc2)
        mlp = self.act("mlp")
        self.linear(fc1, normalized, dim, mlp, prm[f"{name} fc1"], gelu=True)
        fc2 = self.load_layer(block.fc2, f"{name} fc2", residual=True) if early is None else \
            self.preloaded_layer(block.fc2, early)
        if (following is not None and not selects_next
                and self.last_host[0] == len(self.emit.instructions) - 1):
            self.load_ln1(following, f"block {index + 1}")
        if following is not None and self.pipelines_layernorm(
                index, block, following, selects_next,
                self.early_regions(index + 1, following)):
            return self.fc2_into_layernorm(fc2, index, block, following, prm[f"{name} fc2"],
                                           result)
        if following is None and self.final is not None and self.pipelines_layernorm(
                index, block, None, False, [self.plan.region(Space.PRM, "head"),
                                            self.plan.region(Space.LNP, "final norm")]):
            return self.fc2_into_final_norm(fc2, index, block, prm[f"{name} fc2"], result)
        fc2_fused = fuses_residual(block.fc2, self.tokens, self.config)
        if fc2_fused:
            self.linear(fc2, mlp, block.hidden, result, prm[f"{name} fc2"],
                        residual=Residual.of(x1, block.residual2))
        else:
            self.linear(fc2, mlp, block.hidden, self.act("sublayer"), prm[f"{name} fc2"])
        next_qkv = None
        if following is None:
            self.preload_beside()
        else:
            next_qkv = self.load_layer(following.qkv, f"block {index + 1} qkv")
        if not fc2_fused:
            self.add(x1, self.act("sublayer"), result, block.residual2)
        return next_qkv

    def load_ln1(self, block, name):
        """LOAD the LN1 parameters of ``block`` (called ``name``) before its phase
        (:attr:`early_ln1`)."""
        self.early_ln1 = name
        self.load_layernorms({f"{name} ln1": block.ln1}, self.plan.phase(f"{name} attention"))

    def early_regions(self, index, block):
        """The PRM and LNP regions block ``index`` (``block``) loads before it starts where
        its LN1 runs in the block before (:meth:`fc2_into_layernorm`)."""
        name = f"block {index}"
        return [*(self.plan.region(Space.PRM, region)
                  for region in self.attention_params(block, name, True)),
                self.plan.region(Space.LNP, f"{name} ln1")]

    @staticmethod
    def attention_params(block, name, proj_fused):
        """The sources of the PRM load beside block ``name``'s LN1: its attention's (and
        FC2's where proj's residual ADD is an instruction)."""
        return {**({} if proj_fused else {f"{name} fc2": block.fc2}),
                f"{name} qkv": block.qkv, f"{name} proj": block.proj,
                f"{name} score": block.score, f"{name} context": block.context}

    def pipelines_layernorm(self, index, block, following, selects_next, early):
        """Whether the LayerNorm after block ``index`` (the next block's LN1, or with no
        ``following`` block the final norm) runs beside its FC2 (:meth:`fc2_beside_norm`):
        it is one of :attr:`beside`, a next block has no selector stage before it, the
        heads overlap
        (:meth:`overlaps`), the plan pins its regions to
        :data:`~.vit_plan.LAYERNORM_BANKS`, the residual ADDs after this block's proj and
        FC2 (and the next one's proj) are GEMMs' write-back, there is more than one token
        tile, and the parameter regions ``early`` (PRM and LNP) may load now: none of their
        entries is one the plan keeps live through this phase."""
        if self.beside is not None and index not in self.beside:
            return False
        if selects_next or not self.overlaps(block) or self.token_tiles < 2:
            return False
        layers = (block.proj, block.fc2) + (() if following is None else (following.proj,))
        if not all(fuses_residual(layer, self.tokens, self.config) for layer in layers):
            return False
        if any(self.plan.region(Space.ACT, name).bank != bank
               for name, bank in LAYERNORM_BANKS.items()):
            return False
        return not any(region.space == other.space and self.phase in other.phases
                       and region.start < other.end and other.start < region.end
                       for region in early for other in self.plan.regions)

    def fc2_beside_norm(self, loaded, index, block, prm, result, norm, lnp, norms,
                        first_tile):
        """Block ``index``'s FC2 (``loaded``, its parameters from PRM ``prm``) into
        ``result``, its residual ADD in the write-back, with the LayerNorm ``norm``
        (parameters from LNP ``lnp``) of the first ``norms`` token tiles of ``result`` into
        ``normalized`` beside its last chunk, which runs one GEMM per token tile: tile
        ``t``'s LayerNorm beside the GEMM of tile ``t + 1`` (it reads the tokens FC2 has
        written into bank 1 and writes bank 0, while FC2 reads ``mlp`` and ``x1`` from bank
        0 and writes bank 1), the last tile's on its own after them where ``norms`` is
        every tile (:attr:`layernorms_beside` records ``index``). ``first_tile()`` emits
        what runs beside tile 0's GEMM; the far slot of the others
        (:data:`~vitforge.hw.accel.isa.FAR_ROWS`), or their side slot past ``norms``, loads
        early (:meth:`load_early`). Returns the cycles a load right after may take beside
        the last LayerNorm (0 where none runs alone)."""
        dim, normalized = self.dim, self.act("normalized")
        self.layernorms_beside.append(index)

        def piece(tile, beside):
            self.layernorm(norm, lnp, result + tile * dim, normalized + tile * dim,
                           m_tiles=1, beside=beside)

        def between(tile):
            if tile == 0:
                first_tile()
            elif tile <= norms:
                piece(tile - 1, True)
                self.preload_far()
            else:
                self.preload_beside()

        self.linear(loaded, self.act("mlp"), block.hidden, result, prm,
                    residual=Residual.of(self.act("x1"), block.residual2), between=between)
        if norms < self.token_tiles:
            return 0
        piece(norms - 1, False)
        return self.last_host[1] - SIDE_START_DELAY

    def fc2_into_layernorm(self, loaded, index, block, following, prm, result):
        """FC2 (``loaded``) into block ``index``'s ``result`` with the next block's LN1
        beside its last chunk (:meth:`fc2_beside_norm`), on the next block's token tiles.
        Tile 0's GEMM hosts the load of the LN1 parameters (where FC1's last GEMM did not)
        or loads early; the next block's attention parameters, then as many of its QKV's
        column tiles as the far slots and the last LayerNorm hide, load early. Returns the
        next QKV, loaded; the next block skips its LN1 and its parameters' load
        (:attr:`early_block`)."""
        name, lanes = f"block {index + 1}", self.lanes
        upcoming = self.plan.phase(f"{name} attention")
        self.next_params, self.early_prm = self.preload_params(
            self.attention_params(following, name, True), upcoming)
        k = following.qkv.weight.shape[0]

        def first_tile():
            if following.qkv.sparse is None:
                widest = min(tiles(following.qkv.weight.shape[1], lanes),
                             self.emit.weight_end // 2 // k)
                self.next_qkv = _Preload(Space.WGT, pack_weights(
                    following.qkv.weight[:, :widest * lanes], lanes),
                    self.emit.take_weight_half())
            if self.early_ln1 == name:
                self.preload_beside()
            else:
                self.load_ln1(following, name)

        budget = self.fc2_beside_norm(
            loaded, index, block, prm, result, following.ln1,
            self.plan.region(Space.LNP, f"{name} ln1").start,
            tiles(self.plan.phases[upcoming].tokens, lanes), first_tile)
        if self.next_params.left:
            self.finish_preload(self.next_params)
            budget = 0
        qkv, self.next_params, self.next_qkv = self.next_qkv, None, None
        self.early_block = name
        if qkv is None:
            return self.load_layer(following.qkv, f"{name} qkv")
        # QKV's first chunk: the column tiles loaded so far, and those the last LayerNorm
        # hides beside it.
        qkv.keep(max(1, -(-qkv.done // k), (qkv.done + self._fitting(qkv, budget)) // k) * k)
        return self.preloaded_layer(following.qkv, qkv)

    def fc2_into_final_norm(self, loaded, index, block, prm, result):
        """The last block's FC2 (``loaded``, block ``index``) into ``result`` with the final
        norm of the class token's tile beside its last chunk (:meth:`fc2_beside_norm`):
        tile 0's GEMM hosts the norm's parameters, the far slot of tile 1's the head's, the
        GEMMs after it the head's weights; the head then runs its GEMM alone
        (:attr:`early_block`)."""
        head = self.plan.phase("head")
        self.next_params, self.early_prm = self.preload_params(
            {"head": self.final.head}, head)
        norm = self.plan.region(Space.LNP, "final norm")

        def first_tile():
            self.load_layernorms({"final norm": self.final.norm}, head)

        self.fc2_beside_norm(loaded, index, block, prm, result, self.final.norm, norm.start,
                             1, first_tile)
        self.finish_preload(self.next_params)
        self.next_params = None
        self.early_block = "head"

    def blocks(self, blocks, first_qkv, stages=()):
        """Every block in turn, each selector stage of ``stages`` (:class:`~.selection.SelectStage`)
        before its block; ``first_qkv`` is block 0's QKV layer, loaded."""
        qkv, flips = first_qkv, 0
        selected = {stage.block: stage for stage in stages}
        for index, block in enumerate(blocks):
            if index in selected:
                source, result = token_buffers(index, flips)
                lower_select(self, selected[index], self.act(source), self.act(result))
                flips += 1
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            qkv = self.block(index, block, qkv, following, flips, index + 1 in selected)

    def patch_embedding(self, model):
        """Patch GEMM plus the position table (already in ``x1``) into ``x``; returns
        block 0's QKV layer, loaded beside the GEMM."""
        self.enter("patch embedding")
        prm = self.load_params({"patch embedding": model.patch})
        patch = self.load_layer(model.patch, "patch embedding", residual=True)
        embed = model.embed
        if fuses_residual(model.patch, self.tokens, self.config):
            # The position table (x1) is the sum's y, the patch GEMM's result its x.
            self.linear(patch, self.act("patches"), model.shape.patch_features, self.act("x"),
                        prm["patch embedding"],
                        residual=Residual.of(self.act("x1"), embed, result_first=True))
            return self.load_layer(model.blocks[0].qkv, "block 0 qkv")
        self.linear(patch, self.act("patches"), model.shape.patch_features, self.act("sublayer"),
                    prm["patch embedding"])
        qkv = self.load_layer(model.blocks[0].qkv, "block 0 qkv")
        self.add(self.act("sublayer"), self.act("x1"), self.act("x"), embed)
        return qkv

    def head(self, model, flips=0):
        """Final LayerNorm and the head GEMM, both on the tile of the class token (row 0);
        the tokens are where the last block left them after ``flips`` selector stages."""
        self.enter("head")
        if self.early_block == "head":
            prm = self.early_prm
        else:
            final = self.act(token_buffers(len(model.blocks), flips)[0])
            lnp = self.load_layernorms({"final norm": model.norm})
            self.layernorm(model.norm, lnp["final norm"], final, self.act("normalized"),
                           m_tiles=1)
            prm = self.load_params({"head": model.head})
        loading = self.head_weights
        if loading is None:
            loaded = self.load_layer(model.head, "head", m_tiles=1)
        else:
            self.finish_preload(loading)
            loaded = LoadedLayer(model.head, ((0, model.head.weight.shape[1]),), loading.base)
        self.linear(loaded, self.act("normalized"), self.dim, self.act("logits"),
                    prm["head"], m_tiles=1, rows=1)
