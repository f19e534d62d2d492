"""Run-time token selection in a compiled ViT: the stages, their plan, and their instructions.

A selector stage runs before its block (``docs/token-selection.md``,
Hardware). Its predictor runs on the GEMM engine, the LayerNorm and GELU
units, per head on the head's channels of all the stage's tokens; the
``TOKEN_MEAN`` instruction averages the global half of ``z`` in place and the
head means; ``TOKEN_SELECT`` scores, keeps, compacts and folds the dropped
tokens into the package token, into the other token buffer, and sets the live
token count. Every instruction after the first ``TOKEN_SELECT`` that depends
on the token count takes it from the live registers; its fields hold the
stage's most tokens, for which the buffers are sized.
"""

from dataclasses import dataclass

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.accel.config import MAX_SELECT_TOKENS, SIGMOID_WORDS, TABLE_WORDS
from vitforge.hw.accel.isa import SELECT_MODES, Opcode, Space
from vitforge.hw.numerics import MAX_SELECTOR_HEADS
from vitforge.sw.gemm.layout import aligned, pack_weights, tiles
from vitforge.sw.model.quantized_selector import check_selectors_fit
from vitforge.sw.model.selector import keep_count

__all__ = ["SelectStage", "select_stages", "block_counts", "select_regions", "plan_select",
           "lower_select"]

#: The predictor's GEMM layers, in the order they run.
_LAYERS = ("input", "fc1", "fc2", "difference", "head_fc1", "head_fc2")


@dataclass(frozen=True)
class SelectStage:
    """One selector stage of a compiled model.

    Attributes
    ----------
    index : int
        The stage (0-based).
    block : int
        The block it runs before.
    selector : QuantizedSelector
    mode : str
        ``"threshold"`` or ``"topk"``.
    keep : int
        ``topk``: the patches it keeps at most; ``threshold``: 0.
    tokens, alive : int
        The most tokens and alive patches it can see (its fields' values).
    live : bool
        Whether it runs on the live count of an earlier stage (a ``threshold`` one's:
        ``topk`` stages leave counts the compiler knows and writes into the fields).
    """

    index: int
    block: int
    selector: object
    mode: str
    keep: int
    tokens: int
    alive: int
    live: bool

    @property
    def name(self):
        return f"select {self.index}"

    @property
    def exact(self):
        """Whether it leaves the count the plan gives it (``topk``), which the compiler
        writes into the fields after it; a ``threshold`` stage's count is live."""
        return self.mode == "topk"


def select_stages(selectors, shape):
    """The :class:`SelectStage` of each stage of ``selectors``, and each block's most tokens.

    ``topk`` counts are exact: the stage keeps ``min(keep, alive)`` patches
    and appends a package token when it drops one. ``threshold`` stages keep
    the most of the stage before (a threshold may keep every patch).

    Returns
    -------
    (tuple of SelectStage, tuple of int)
    """
    check_selectors_fit(selectors, shape)
    if shape.heads > MAX_SELECTOR_HEADS or shape.tokens > MAX_SELECT_TOKENS:
        raise ConfigError(f"token selection in hardware takes at most {MAX_SELECTOR_HEADS} "
                          f"heads and {MAX_SELECT_TOKENS} tokens, not {shape.heads} heads and "
                          f"{shape.tokens} tokens")
    config = selectors.config
    tokens, alive, stages = shape.tokens, shape.patches, []
    for index, (block, ratio, selector) in enumerate(zip(config.blocks, config.ratios,
                                                         selectors.stages)):
        keep = keep_count(ratio, shape.patches) if config.mode == "topk" else 0
        stage = SelectStage(index, block, selector, config.mode, keep, tokens, alive,
                            live=bool(stages) and not stages[-1].exact)
        stages.append(stage)
        tokens, alive = _output_tokens(stage), min(alive, keep) if keep else alive
    return tuple(stages), block_counts([stage.block for stage in stages],
                                       [_output_tokens(stage) for stage in stages], shape)


def block_counts(stage_blocks, tokens_after, shape):
    """The tokens each block of a model of ``shape`` runs on: those the last stage before it
    leaves (``tokens_after[s]`` for the stage before block ``stage_blocks[s]``), or all."""
    after, counts, tokens = dict(zip(stage_blocks, tokens_after)), [], shape.tokens
    for block in range(shape.depth):
        tokens = after.get(block, tokens)
        counts.append(tokens)
    return tuple(counts)


def _output_tokens(stage):
    """The most tokens ``stage`` leaves."""
    if stage.mode == "topk" and stage.keep < stage.alive:
        return stage.tokens - (stage.alive - stage.keep) + 1
    return stage.tokens


def _layers(selector):
    return [(name, getattr(selector, name)) for name in _LAYERS]


def _packed_weights(selector, lanes, align):
    """The predictor's weight matrices in weight layout, one after another, and where each
    starts (label -> word offset). Each matrix's rows are padded with zeros to a multiple
    of ``align`` (``k_per_cycle``: a dense GEMM's operands start on aligned groups of
    words), its column tiles' stride."""
    offsets, words = {}, []
    for label, layer in _layers(selector):
        offsets[label] = sum(len(part) for part in words)
        rows, cols = layer.weight.shape
        padded = np.zeros((aligned(rows, align), cols), dtype=np.int8)
        padded[:rows] = layer.weight
        words.append(pack_weights(padded, lanes))
    return np.concatenate(words), offsets


def _head_layout(selector, align):
    """Offsets in ``select heads`` of the head predictor's hidden layer and output (its
    input, the head means, at 0), and the words the region needs."""
    hidden_start = aligned(selector.heads, align)
    logits_start = hidden_start + aligned(selector.head_fc1.weight.shape[1], align)
    return hidden_start, logits_start, logits_start + selector.heads


def select_regions(stages, lanes, align):
    """The ACT regions ``(name, words)`` only selector ``stages`` use: ``select fc1`` and
    ``select fc2``, the token predictor's hidden layers (``dim / 2`` and ``dim / 4``
    channels of every head together); ``select scores``, each token's score per head; and
    ``select heads``, one tile of the head predictor's input (the head means), hidden
    layer and output (the head weights), each starting on a multiple of ``align``."""
    if not stages:
        return []
    selectors = [stage.selector for stage in stages]
    token_tiles = tiles(stages[0].tokens, lanes)
    dim = selectors[0].heads * selectors[0].head_dim
    return [("select fc1", token_tiles * (dim // 2)), ("select fc2", token_tiles * (dim // 4)),
            ("select scores", token_tiles * max(selector.heads for selector in selectors)),
            ("select heads", max(_head_layout(selector, align)[2] for selector in selectors))]


def plan_select(builder, stage, dim, source, result):
    """The phase of ``stage``: its loads, operands (every predictor weight in one half of
    WGT) and reductions. Its predictor's layers run in ``normalized``, ``qkv`` and the
    :func:`select_regions`."""
    name, selector = stage.name, stage.selector
    if selector.head_dim % (4 * builder.align):
        raise ConfigError(f"the head dim must be a multiple of {4 * builder.align} for a token "
                          f"selector on k_per_cycle={builder.align} (its GEMMs read aligned "
                          f"groups of words), not {selector.head_dim}")
    phase = builder.phase(name, stage.tokens, source, result, "normalized", "qkv",
                          "select fc1", "select fc2", "select scores", "select heads")
    layers = _layers(selector)
    builder.load(Space.PRM, phase, phase,
                 [(f"{name} {label}", layer.weight.shape[1]) for label, layer in layers])
    builder.load(Space.LNP, phase, phase, [(f"{name} ln", selector.head_dim)])
    builder.operand(phase, f"{name} weights",
                    len(_packed_weights(selector, builder.lanes, builder.align)[0]))
    for label, layer in layers:
        builder.reduction(phase, f"{name} {label}", layer.weight.shape[0])
    return phase


def lower_select(lowering, stage, source, result):
    """The instructions of ``stage`` from token buffer ``source`` into ``result``.

    The predictor's weights (a few hundred words) go in one LOAD into the half of
    WGT that the next block's QKV weights, loaded beside the last block's last
    GEMM, do not use.
    """
    emit, selector, dim = lowering.emit, stage.selector, lowering.dim
    heads, d = selector.heads, selector.head_dim
    hidden = selector.head_fc1.weight.shape[1]
    lowering.enter(stage.name)
    lowering.live = stage.live
    prm = lowering.load_params({f"{stage.name} {label}": layer
                                for label, layer in _layers(selector)})
    lnp = lowering.load_layernorms({f"{stage.name} ln": selector.ln})[f"{stage.name} ln"]
    normalized, z, f1, f2 = (lowering.act(name) for name in ("normalized", "qkv", "select fc1",
                                                              "select fc2"))
    scores, small = lowering.act("select scores"), lowering.act("select heads")

    align = lowering.config.k_per_cycle
    packed, offsets = _packed_weights(selector, lowering.lanes, align)
    base = emit.take_weight_half()
    emit.load(Space.WGT, packed, base, len(packed))
    weights = {label: base + offset for label, offset in offsets.items()}

    def per_head(label, a, a_width, c, c_width, gelu=None):
        """One GEMM per head of layer ``label``, its results through the GELU table ``gelu``
        if given (LOADed into TBL first)."""
        k, n = getattr(selector, label).weight.shape
        if gelu is not None:
            emit.load(Space.TBL, gelu, 0, TABLE_WORDS)
        for head in range(heads):
            lowering.gemm(a + head * k, a_width, weights[label], aligned(k, align),
                          c + head * n, c_width, prm[f"{stage.name} {label}"], k, n,
                          gelu=gelu is not None)

    for head in range(heads):
        lowering.layernorm(selector.ln, lnp, source + head * d, normalized + head * d,
                           channels=d)
    per_head("input", normalized, dim, z, dim, selector.input_gelu)
    half = d // 2
    for head in range(heads):
        start = z + head * d + half
        emit(Opcode.TOKEN_MEAN, src=start, src_stride=dim, words=half, group=1,
             alive=stage.alive, dst=start, dst_stride=dim, dst_tiles=lowering.token_tiles,
             live=lowering.live_bits(Opcode.TOKEN_MEAN, "alive", "dst_tiles"))
    per_head("fc1", z, dim, f1, dim // 2, selector.fc1_gelu)
    per_head("fc2", f1, dim // 2, f2, dim // 4, selector.fc2_gelu)
    per_head("difference", f2, dim // 4, scores, heads)
    emit(Opcode.TOKEN_MEAN, src=source, src_stride=dim, words=dim, group=d, alive=stage.alive,
         dst=small, dst_stride=heads, dst_tiles=1,
         live=lowering.live_bits(Opcode.TOKEN_MEAN, "alive"))
    hidden_start, logits_start, _ = _head_layout(selector, align)
    head_hidden, logits = small + hidden_start, small + logits_start
    emit.load(Space.TBL, selector.head_gelu, 0, TABLE_WORDS)
    lowering.gemm(small, hidden_start, weights["head_fc1"], aligned(heads, align),
                  head_hidden, hidden, prm[f"{stage.name} head_fc1"], heads, hidden,
                  m_tiles=1, rows=1, gelu=True)
    lowering.gemm(head_hidden, logits_start - hidden_start, weights["head_fc2"],
                  aligned(hidden, align), logits, heads, prm[f"{stage.name} head_fc2"],
                  hidden, heads, m_tiles=1, rows=1)
    emit.load(Space.SIG, (selector.keep_table.tolist() + selector.weight_table.tolist()), 0,
              SIGMOID_WORDS)
    emit(Opcode.TOKEN_SELECT, src=source, src_stride=dim, dst=result, dst_stride=dim,
         channels=dim, scores=scores, scores_stride=heads, weights=logits, heads=heads,
         tokens=stage.tokens, alive=stage.alive, keep=stage.keep,
         mode=SELECT_MODES.index(stage.mode),
         live=lowering.live_bits(Opcode.TOKEN_SELECT, "tokens", "alive"))
    lowering.live = not stage.exact
