"""Compiler: integer encoder blocks or a whole ViT -> an accelerator program and its image.

The memory plan (:mod:`.vit_plan`) decides where everything lies in the
scratchpads; :func:`config_for` sizes an accelerator from the same plan. With
two ACT banks the compiler plans for overlapped heads (each softmax beside the
GEMMs of its neighbours, :meth:`~.lowering.Lowering.attention`) and falls back to
heads in turn, on the unbanked plan, when that plan does not fit the
accelerator or the token counts are live (``threshold`` selector stages; ``topk``
ones leave counts the compiler knows). The
lowering (:mod:`.lowering`) emits the instructions at the plan's addresses
through an emitter (:mod:`.emitter`) that lays out the image, and the result
is one complete :class:`~.program.CompiledProgram`. A model is compiled once;
:meth:`~.program.CompiledProgram.with_input` patches each image's patch
features into it.
"""

from dataclasses import replace
from functools import partial
from types import SimpleNamespace

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import Space

from .cycles import predict
from .emitter import Emitter
from .lowering import Lowering, fuses_residual
from .program import CompiledProgram, ExternalMatrix, InputSlot
from .selection import select_stages
from .vit_plan import ACT_BANKS, LAYERNORM_BANKS, plan_blocks, plan_model, token_buffers

__all__ = ["compile_blocks", "compile_model", "config_for", "config_for_model"]


def _load_input(lowering, slot, values, region):
    """LOAD the rows of input ``slot`` for ``values`` into ACT ``region``."""
    lowering.enter("input")
    lowering.emit.load_activations(slot.rows(values), lowering.act(region))


def _sequential_reason(config, blocks, stages):
    """Why the heads of ``blocks`` cannot overlap on ``config`` with selector ``stages``,
    whatever the plan, or ``None``."""
    if config.act_banks == 1:
        return "act_banks=1"
    if not all(stage.exact for stage in stages):
        return "threshold selector stages make the token counts live"
    if all(block.heads == 1 for block in blocks):
        return "every block has one head"
    return None


def _banked_plan(make_plan, config):
    """``(plan, None)``: ``make_plan(bank_start=..., banks=...)`` on ``config``'s ACT banks,
    pinned to :data:`~.vit_plan.LAYERNORM_BANKS` where that fits ``config``, else to
    :data:`~.vit_plan.ACT_BANKS`; ``(None, why not)`` if neither fits."""
    for banks in (LAYERNORM_BANKS, ACT_BANKS):
        try:
            plan = make_plan(bank_start=config.act_bank_start, banks=banks)
            plan.check(config)
        except ConfigError as error:
            reason = f"the banked plan does not fit: {error}"
        else:
            return plan, None
    return None, reason


def _choose_plan(make_plan, config, blocks, stages):
    """``(plan, sequential reason)``: the banked plan (reason ``None``) where heads may
    overlap and it fits ``config``, else the unbanked one, checked against ``config``."""
    reason = _sequential_reason(config, blocks, stages)
    if reason is None:
        plan, reason = _banked_plan(make_plan, config)
        if plan is not None:
            return plan, None
    plan = make_plan(bank_start=None)
    plan.check(config)
    return plan, reason


def _fastest(lower):
    """The program of ``lower(beside)`` that the cycle model finds fastest.

    ``beside`` is the set of blocks whose FC2 may run the LayerNorm after it beside its
    last token tiles (:meth:`~.lowering.Lowering.fc2_beside_norm`), ``None`` for every
    block where the plan allows. That pays where FC2's tail is long: on few token tiles
    its far slots leave the next block's parameters and weights less DMA time than the
    LayerNorm it saves (DeiT-S after a top-k stage: 650 cycles more a block on three
    tiles). So each block keeps the choice that runs its MLP and the phase after it (the
    next block's attention, or the head) in fewer cycles, and the program is the fastest
    of every block's LayerNorm beside, none, and that choice.
    """
    every = lower(None)
    if not every.layernorms_beside:
        return every
    alone = lower(frozenset())
    sections = [predict(program).section_cycles(program) for program in (every, alone)]

    def cycles(section_cycles, block):
        after = f"block {block + 1} attention"
        return section_cycles[f"block {block} mlp"] + section_cycles.get(
            after if after in section_cycles else "head", 0)

    chosen = frozenset(block for block in every.layernorms_beside
                       if cycles(sections[0], block) < cycles(sections[1], block))
    programs = [every, alone]
    if chosen not in (frozenset(every.layernorms_beside), frozenset()):
        programs.append(lower(chosen))
    return min(programs, key=lambda program: predict(program).cycles)


def _finish(lowering, region, rows, cols, reason):
    """STORE ``rows x cols`` from ACT ``region``, DONE; returns the program's pieces
    (``reason`` why its heads do not overlap, ``None`` if they do)."""
    emit = lowering.emit
    lowering.enter("output")
    output = emit.store_activations(lowering.act(region), rows, cols)
    program_addr = emit.finish()
    return dict(config=lowering.config, plan=lowering.plan, image=bytes(emit.image),
                program_addr=program_addr, instructions=tuple(emit.instructions),
                sections=tuple(emit.sections), trace=tuple(emit.traced), macs=emit.macs,
                dense_macs=emit.dense_macs, dense_fallback=tuple(lowering.dense_fallback),
                output=output, overlap=reason is None, sequential_reason=reason,
                layernorms_beside=tuple(lowering.layernorms_beside))


def compile_blocks(config, blocks, x, *, block_tokens=None, selectors=None, trace=False):
    """Compile ``blocks`` applied in turn to int8 tokens ``x`` (N x C).

    Parameters
    ----------
    config : AcceleratorConfig
    blocks : sequence of QuantizedEncoderBlock
    x : numpy.ndarray
        int8 tokens; :meth:`~.program.CompiledProgram.with_input` swaps in
        others of the same shape.
    block_tokens : sequence of int, optional
        Tokens of each block's stage: block ``i`` runs on the first
        ``block_tokens[i]`` rows (non-increasing); all rows by default. The
        output has the last block's rows.
    selectors : QuantizedSelectors, optional
        Token selection at run time, row 0 of ``x`` being the class token (see
        :func:`compile_model`); the program then computes
        :func:`~vitforge.sw.golden.encoder.pruned_encoder_blocks`, and its
        output has the most rows the last block may see, the kept ones first.
    trace : bool
        Follow every computing instruction by a STORE of the words it wrote,
        so a co-verification mismatch can be traced to the first instruction
        whose result differs (:attr:`CompiledProgram.trace`).

    Raises
    ------
    ValueError
        When a shape does not fit the configured scratchpads (naming the region
        and the depth), the array is larger than 64, a reduction exceeds
        ``k_max`` or ``block_tokens`` is not a valid list.
    """
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 2:
        raise ConfigError(f"input tokens must be a 2-D int8 array, not {x.dtype} of shape "
                          f"{x.shape}")
    blocks = list(blocks)
    stages, block_tokens = _stages(_block_shape(blocks, x.shape[0]), block_tokens, selectors)
    plan, reason = _choose_plan(partial(plan_blocks, blocks, x.shape[0], config.array,
                                        block_tokens, stages, align=config.k_per_cycle,
                                        fused_after=partial(fuses_residual, config=config)),
                                config, blocks, stages)
    dim = blocks[0].dim
    if x.shape[1] != dim:
        raise ConfigError(f"input tokens must have {dim} channels, not {x.shape[1]}")

    def lower(beside):
        lowering = Lowering(config, plan, Emitter(config, trace), dim, beside)
        lowering.reserve_fc2(blocks, plan.least_weight_words)
        slot = InputSlot("input tokens", ExternalMatrix(lowering.emit.next_word, *x.shape), 0)
        _load_input(lowering, slot, x, "x")
        lowering.blocks(blocks, lowering.load_layer(blocks[0].qkv, "block 0 qkv"), stages)
        return CompiledProgram(
            **_finish(lowering, token_buffers(len(blocks), len(stages))[0],
                      plan.phases[-1].tokens, dim, reason), input=slot, logits=False)

    return _fastest(lower)


def _stages(shape, block_tokens, selectors):
    """The selector stages and each block's (most) tokens, for a model of ``shape``."""
    if selectors is None:
        return (), block_tokens
    if block_tokens is not None:
        raise ConfigError(f"block_tokens must be None when selectors prune the tokens, not "
                          f"{block_tokens!r}")
    return select_stages(selectors, shape)


def compile_model(config, model, patches=None, *, block_tokens=None, selectors=None,
                  trace=False):
    """Compile a whole :class:`QuantizedVit`; its input is one image's int8 patch features.

    Token order is ``[class token, patches...]``: the patch embedding is a
    GEMM over a zero row for the class token and the patches, plus the ADD of
    the position table; then every block, the final LayerNorm, and the head
    GEMM on the tile that holds the class token, whose logits tile is stored.

    Parameters
    ----------
    config : AcceleratorConfig
    model : QuantizedVit
    patches : numpy.ndarray, optional
        int8 ``(patches, patch features)``; zero by default. Compile once and
        give each image with :meth:`~.program.CompiledProgram.with_input`.
    block_tokens : sequence of int, optional
        Tokens of each block's stage, as for :func:`compile_blocks`; the first
        rows (the class token first) stay.
    selectors : QuantizedSelectors, optional
        Token selection at run time (:mod:`.selection`), in the mode of
        ``selectors.config``; the program then computes
        :func:`~vitforge.sw.golden.encoder.pruned_vit_logits`. Not with
        ``block_tokens``.
    trace : bool
        As for :func:`compile_blocks`.
    """
    shape = model.shape
    stages, block_tokens = _stages(model.shape, block_tokens, selectors)
    plan, reason = _choose_plan(partial(plan_model, model, config.array, block_tokens, stages,
                                        align=config.k_per_cycle,
                                        fused_after=partial(fuses_residual, config=config)),
                                config, model.blocks, stages)

    def lower(beside):
        lowering = Lowering(config, plan, Emitter(config, trace), shape.dim, beside)
        lowering.prefetch_head(model.head, plan.least_weight_words)
        lowering.reserve_fc2(model.blocks, plan.least_weight_words)
        slot = InputSlot("patches", ExternalMatrix(lowering.emit.next_word, shape.tokens,
                                                   shape.patch_features), 1)
        _load_input(lowering, slot,
                    np.zeros(slot.shape, np.int8) if patches is None else patches, "patches")
        lowering.emit.load_activations(model.position, lowering.act("x1"))
        lowering.final = model
        lowering.blocks(list(model.blocks), lowering.patch_embedding(model), stages)
        lowering.head(model, flips=len(stages))
        return CompiledProgram(**_finish(lowering, "logits", 1, shape.classes, reason),
                               input=slot, logits=True)

    return _fastest(lower)


def _fused(layer, tokens):
    """Every residual ADD in its GEMMs' write-back: the plan of two read ports and dense
    weights, whose PRM holds FC1's parameters from attention on."""
    return True


def _power_of_two(value, minimum=16):
    return 1 << (max(value, minimum) - 1).bit_length()


def _smallest_config(plan, array):
    """The smallest power-of-two scratchpads that hold ``plan``; two operands fit WGT.

    Raises
    ------
    vitforge.errors.ConfigError
        If the plan needs more than instruction fields can address.
    """
    try:
        return AcceleratorConfig(array=array, act_depth=_power_of_two(plan.depth(Space.ACT)),
                                 wgt_depth=_power_of_two(2 * plan.weight_words),
                                 prm_depth=_power_of_two(plan.depth(Space.PRM)),
                                 lnp_depth=_power_of_two(plan.depth(Space.LNP)),
                                 k_max=_power_of_two(plan.reduction_depth))
    except ConfigError as error:
        raise ConfigError(f"these shapes need a larger accelerator than the instruction set "
                          f"can address: {error}") from None


def _config_for_plans(make_plan, blocks, array, selected=None):
    """The smallest power-of-two scratchpads that hold ``make_plan()`` and the plan
    ``selected`` (selector stages) if given, with one ACT read port or two (where the
    residual ADDs are GEMMs' write-back, FC1's parameters are loaded with the block's
    others), with ``act_depth`` doubled until ``make_plan``'s banked plan fits too, where
    heads may overlap (short of what instructions address: then the heads run in turn)."""
    configs = [_smallest_config(plan, array)
               for plan in (make_plan(), make_plan(fused_after=_fused), selected)
               if plan is not None]
    config = AcceleratorConfig(**{name: max(getattr(config, name) for config in configs)
                                  for name in configs[0].to_dict()})
    if _sequential_reason(config, blocks, ()) is None:
        while _banked_plan(make_plan, config)[0] is None:
            try:
                config = replace(config, act_depth=2 * config.act_depth)
            except ConfigError:
                break
    return config


def _block_shape(blocks, tokens):
    """What selector stages need to know of a stack of blocks on ``tokens`` tokens."""
    return SimpleNamespace(tokens=tokens, patches=tokens - 1, depth=len(blocks),
                           heads=blocks[0].heads, dim=blocks[0].dim)


def config_for(blocks, tokens, array, *, block_tokens=None, selectors=None):
    """The smallest power-of-two scratchpads that hold ``blocks`` on ``tokens`` tokens.

    The compiler's memory plan decides; this only sizes the buffers so a
    simulation does not carry megabytes of unused memory. ``act_depth`` holds
    the banked plan, so the heads overlap (:func:`compile_blocks`) where the
    blocks have more than one. With ``selectors`` the accelerator runs the
    blocks both with and without them.
    """
    blocks = list(blocks)
    selected = None
    if selectors is not None:
        stages, counts = _stages(_block_shape(blocks, tokens), block_tokens, selectors)
        selected = plan_blocks(blocks, tokens, array, counts, stages)
    return _config_for_plans(partial(plan_blocks, blocks, tokens, array, block_tokens), blocks,
                             array, selected)


def config_for_model(model, array, *, block_tokens=None, selectors=None):
    """:func:`config_for` for a whole :class:`QuantizedVit`.

    With ``selectors`` the accelerator runs the model both with and without them.
    """
    selected = None
    if selectors is not None:
        stages, counts = _stages(model.shape, block_tokens, selectors)
        selected = plan_model(model, array, counts, stages)
    return _config_for_plans(partial(plan_model, model, array, block_tokens), model.blocks,
                             array, selected)
