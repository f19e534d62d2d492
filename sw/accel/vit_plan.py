"""The memory plans of a stack of encoder blocks and of a whole ViT.

Phases: ``input``, for a whole model ``patch embedding``, then ``block i
attention`` and ``block i mlp`` for every block, for a whole model ``head``,
and ``output``. Block ``i`` runs on its stage's token count (the first rows
of the tokens); ACT regions are sized for all tokens, so every stage fits.
The blocks alternate between the token buffers ``x`` and ``x2``
(:func:`token_buffers`). Each phase names the ACT regions it reads or writes;
a value that crosses phases (a block's source tokens, its attention output in
``sublayer``, its result, the patches, the position table in ``x1``, the
logits) only ever passes to the next phase, which names it too, so the plan
keeps it (:mod:`.plan`).

With two ACT banks (``bank_start``) the plan lets a head's softmax run beside
the GEMMs of its neighbours (:meth:`~.lowering.Lowering.attention`): ``scores``
and ``probabilities`` hold two buffers each (:data:`HEAD_BUFFERS`), and
:data:`ACT_BANKS` pins the regions of attention so that each GEMM and the
softmax beside it use different banks' ports: ``qkv`` and ``probabilities``
in bank 0, ``scores`` and ``context`` in bank 1.
"""

from vitforge.errors import ConfigError
from vitforge.hw.accel.isa import Space
from vitforge.sw.gemm.layout import aligned, tiles
from vitforge.sw.golden.encoder import block_token_counts

from .plan import PlanBuilder
from .selection import plan_select, select_regions

__all__ = ["plan_blocks", "plan_model", "token_buffers", "ACT_BANKS", "LAYERNORM_BANKS",
           "HEAD_BUFFERS"]

#: The ACT bank of each pinned region of a banked plan.
ACT_BANKS = {"qkv": 0, "probabilities": 0, "scores": 1, "context": 1}
#: :data:`ACT_BANKS` with the token buffers in bank 1 and ``x1``, ``normalized`` and ``mlp``
#: in bank 0, where they fit: the next block's LN1 then runs beside FC2's last GEMMs
#: (:meth:`~.lowering.Lowering.pipelines_layernorm`), reading the tokens FC2 has written
#: into bank 1 and writing bank 0, while FC2 reads ``mlp`` and ``x1`` from bank 0 and
#: writes bank 1.
LAYERNORM_BANKS = {**ACT_BANKS, "x": 1, "x2": 1, "x1": 0, "normalized": 0, "mlp": 0}
#: The regions of a banked plan that hold two buffers, alternating between heads.
HEAD_BUFFERS = ("scores", "probabilities")


def token_buffers(index, flips=0):
    """``(source, result)`` ACT regions of block ``index`` after ``flips`` selector stages
    (each moves the tokens to the other buffer); the result of the last block is
    ``token_buffers(len(blocks), flips)[0]``."""
    return ("x", "x2") if (index + flips) % 2 == 0 else ("x2", "x")


def _layer_operand(builder, phase, name, layer):
    """``layer``'s weight matrix as an operand of ``phase``: in weight layout, in column
    tiles of its depth."""
    k, n = layer.weight.shape
    builder.operand(phase, name, tiles(n, builder.lanes) * k, tile_words=k)


def _check_blocks(blocks, tokens):
    if not blocks:
        raise ConfigError("blocks must not be empty")
    if not isinstance(tokens, int) or tokens <= 0:
        raise ConfigError(f"tokens must be a positive integer, not {tokens!r}")
    dim = blocks[0].dim
    for index, block in enumerate(blocks):
        if block.dim != dim:
            raise ConfigError(f"block {index} has dim {block.dim}, block 0 has {dim}")


def _activation_regions(blocks, tokens, lanes, banked, extra_widths=(), align=1):
    """ACT regions ``(name, words)`` in declaration order: each holds ``tokens`` rows, the
    :data:`HEAD_BUFFERS` twice that if ``banked``. ``probabilities``, the A operand of
    ``P V``, has rows of ``tokens`` rounded up to a multiple of ``align`` words.

    ``qkv`` has a few words more where the head dimension is not a multiple of
    ``lanes``: the transpose of the last head's V reads whole blocks of
    ``lanes`` channels, up to :func:`_head_padding` words past the last row.
    """
    dim, hidden = blocks[0].dim, max(block.hidden for block in blocks)
    widths = (("x", dim), ("normalized", dim), ("qkv", 3 * dim), ("scores", tokens),
              ("probabilities", aligned(tokens, align)), ("context", dim), ("sublayer", dim),
              ("x1", dim), ("mlp", hidden), ("x2", dim), *extra_widths)
    padding = {"qkv": max(_head_padding(block, lanes) for block in blocks)}
    buffers = {name: 2 for name in HEAD_BUFFERS} if banked else {}
    return [(name, buffers.get(name, 1) * tiles(tokens, lanes) * width + padding.get(name, 0))
            for name, width in widths]


def _build(builder, activations, bank_start, banks):
    """``builder``'s plan of ``activations``, pinned to ``banks`` if ``bank_start``;
    ``sublayer`` left out where no phase uses it (every residual ADD a GEMM's write-back)."""
    activations = [(name, words) for name, words in activations
                   if name != "sublayer" or name in builder.uses]
    return builder.build(activations, bank_start, None if bank_start is None else banks)


def _head_padding(block, lanes):
    """Channels past the head dimension in its last block of ``lanes`` channels."""
    return tiles(block.head_dim, lanes) * lanes - block.head_dim


def _unfused(layer, tokens):
    """The default ``fused_after``: every residual ADD is an instruction of its own."""
    return False


def _plan_block(builder, index, block, tokens, following, flips, fused_after):
    """Phases, loads, operands and reductions of block ``index`` on ``tokens`` tokens, its
    residual ADDs in the GEMMs' write-back where ``fused_after``."""
    lanes, name = builder.lanes, f"block {index}"
    source, result = token_buffers(index, flips)
    fused = [fused_after(layer, tokens) for layer in (block.proj, block.fc2)]
    attention = builder.phase(f"{name} attention", tokens, source, "normalized", "qkv",
                              "scores", "probabilities", "context",
                              "x1" if fused[0] else "sublayer")
    mlp = builder.phase(f"{name} mlp", tokens, source, *(() if all(fused) else ("sublayer",)),
                        "x1", "normalized", "mlp", result)
    # FC1's parameters load beside the residual ADD before LN2, the others beside LN1
    # (:class:`~.lowering.Lowering`), so that each load hides behind its host: the MLP's
    # hidden + dim entries together would outlast an ADD of as many words. With that ADD
    # in proj's write-back FC1's load beside LN1 too, and FC2's beside proj's last GEMM,
    # after the others (:meth:`~.lowering.Lowering.load_params` loads a run of regions).
    fc1, fc2 = ([(f"{name} {layer}", getattr(block, layer).weight.shape[1])]
                for layer in ("fc1", "fc2"))
    if not fused[0]:
        builder.load(Space.PRM, attention, mlp, fc2)
    builder.load(Space.PRM, attention, attention,
                 [(f"{name} qkv", block.qkv.weight.shape[1]),
                  (f"{name} proj", block.proj.weight.shape[1]),
                  (f"{name} score", tokens), (f"{name} context", block.head_dim)])
    builder.load(Space.PRM, attention if fused[0] else mlp, mlp, fc1)
    if fused[0]:
        builder.load(Space.PRM, attention, mlp, fc2)
    # LN2's parameters load with LN1's, or with no residual ADD before LN1 to host them,
    # after them beside a GEMM of attention.
    if fused[0]:
        builder.load(Space.LNP, attention, attention, [(f"{name} ln1", block.dim)])
    builder.load(Space.LNP, attention, mlp, [(f"{name} ln1", block.dim)] * (not fused[0])
                 + [(f"{name} ln2", block.dim)])
    key_words = tiles(tokens, lanes) * block.head_dim
    value_words = tiles(tokens, lanes) * (block.head_dim + _head_padding(block, lanes))
    for _ in range(block.heads):
        builder.operand(attention, f"{name} keys", key_words)
        builder.operand(attention, f"{name} values", value_words)
    _layer_operand(builder, attention, f"{name} proj", block.proj)
    _layer_operand(builder, mlp, f"{name} fc1", block.fc1)
    _layer_operand(builder, mlp, f"{name} fc2", block.fc2)
    if following is not None:
        _layer_operand(builder, mlp, f"block {index + 1} qkv", following.qkv)
    for what, depth in (("dim", block.dim), ("head dimension", block.head_dim),
                        ("tokens", tokens)):
        builder.reduction(attention, what, depth)
    builder.reduction(mlp, "hidden", block.hidden)


def _plan_encoder(builder, blocks, counts, first, stages, fused_after):
    """Every block, and the selector ``stages`` before theirs; block 0's QKV weights are
    loaded in phase ``first``. Returns how many times the tokens changed buffers."""
    selected = {stage.block: stage for stage in stages}
    _layer_operand(builder, first, "block 0 qkv", blocks[0].qkv)
    flips = 0
    for index, (block, tokens) in enumerate(zip(blocks, counts)):
        if index in selected:
            source, result = token_buffers(index, flips)
            plan_select(builder, selected[index], block.dim, source, result)
            flips += 1
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        _plan_block(builder, index, block, tokens, following, flips, fused_after)
    return flips


def plan_blocks(blocks, tokens, lanes, block_tokens=None, stages=(), bank_start=None,
                align=1, fused_after=_unfused, banks=ACT_BANKS):
    """The plan of :func:`~vitforge.sw.accel.compiler.compile_blocks`.

    Parameters
    ----------
    blocks : sequence of QuantizedEncoderBlock
    tokens : int
        Rows of the input.
    lanes : int
        The array size.
    block_tokens : sequence of int, optional
        Tokens of each block's stage (see
        :func:`~vitforge.sw.golden.encoder.block_token_counts`); all by default.
    stages : tuple of SelectStage
        The selector stages (:func:`~.selection.select_stages`); ``block_tokens``
        then holds each block's most tokens.
    bank_start : int, optional
        The first word of the second ACT bank, for a plan that overlaps heads;
        ``None`` (one bank) by default.
    banks : dict
        The bank of each pinned ACT region (with ``bank_start``): :data:`ACT_BANKS` by
        default, or :data:`LAYERNORM_BANKS`.
    align : int
        ``k_per_cycle`` of the accelerator: GEMM operands in ACT are aligned
        to groups of that many words.
    fused_after : callable
        ``fused_after(layer, tokens)``: whether the residual ADD after a layer run on
        ``tokens`` tokens is its GEMMs' write-back (GEMM ``residual``,
        :func:`~.lowering.fuses_residual`): the layer then writes the sum, and
        ``sublayer`` does not hold its result; never by default.

    Raises
    ------
    vitforge.errors.ConfigError
        If the blocks are not a valid stack, or the regions pinned to bank 0 do
        not fit below ``bank_start``.
    """
    _check_blocks(blocks, tokens)
    counts = block_token_counts(block_tokens, blocks, tokens)
    builder = PlanBuilder(lanes, align)
    flips = _plan_encoder(builder, blocks, counts, builder.phase("input", tokens, "x"), stages,
                          fused_after)
    builder.phase("output", counts[-1], token_buffers(len(blocks), flips)[0])
    return _build(builder, _activation_regions(blocks, tokens, lanes, bank_start is not None,
                                               align=align)
                  + select_regions(stages, lanes, align), bank_start, banks)


def plan_model(model, lanes, block_tokens=None, stages=(), bank_start=None, align=1,
               fused_after=_unfused, banks=ACT_BANKS):
    """The plan of :func:`~vitforge.sw.accel.compiler.compile_model` for a :class:`QuantizedVit`.

    The patch embedding runs on all tokens, the head on the class token's tile.
    ``stages`` are the selector stages (:func:`~.selection.select_stages`);
    ``block_tokens`` then holds each block's most tokens. ``bank_start``,
    ``align``, ``fused_after`` and ``banks`` are as for :func:`plan_blocks`.
    """
    shape, blocks = model.shape, list(model.blocks)
    _check_blocks(blocks, shape.tokens)
    counts = block_token_counts(block_tokens, blocks, shape.tokens)
    builder = PlanBuilder(lanes, align)
    builder.phase("input", shape.tokens, "patches", "x1")
    embedded = () if fused_after(model.patch, shape.tokens) else ("sublayer",)
    embedding = builder.phase("patch embedding", shape.tokens, "patches", *embedded, "x1", "x")
    builder.load(Space.PRM, embedding, embedding, [("patch embedding", shape.dim)])
    _layer_operand(builder, embedding, "patch embedding", model.patch)
    builder.reduction(embedding, "patch features", shape.patch_features)
    flips = _plan_encoder(builder, blocks, counts, embedding, stages, fused_after)
    head = builder.phase("head", counts[-1], token_buffers(len(blocks), flips)[0],
                         "normalized", "logits")
    builder.load(Space.LNP, head, head, [("final norm", shape.dim)])
    builder.load(Space.PRM, head, head, [("head", shape.classes)])
    _layer_operand(builder, head, "head", model.head)
    builder.reduction(head, "dim", shape.dim)
    builder.phase("output", counts[-1], "logits")
    return _build(builder, _activation_regions(
        blocks, shape.tokens, lanes, bank_start is not None,
        (("patches", shape.patch_features), ("logits", shape.classes)), align)
        + select_regions(stages, lanes, align), bank_start, banks)
