"""Compiler: integer encoder blocks -> an accelerator program and its memory image."""

from dataclasses import dataclass, field

import numpy as np

from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.isa import Opcode, Space, encode
from vitforge.sw.gemm.layout import pack_activations, pack_weights, tiles, unpack_activations

from .memory import TABLE_ENTRIES_PER_WORD, pack_entries

__all__ = ["CompiledProgram", "TraceEntry", "compile_blocks", "compile_model", "read_logits",
           "config_for", "config_for_model"]


@dataclass(frozen=True)
class TraceEntry:
    """An instruction's result copied to external memory right after it (trace mode)."""

    index: int            # of the traced instruction in the program
    opcode: Opcode
    act_addr: int         # first activation word of the copied range
    words: int
    dram_addr: int
    stride: int           # activation words per tile of the destination (0: elementwise)


@dataclass
class CompiledProgram:
    """A program with everything it reads, ready to load into external memory.

    ``image`` holds the data sections and then the program at
    ``program_addr``; the input tokens are at ``input_addr`` and the final
    activations are stored to ``output_addr`` (both in activation layout, in
    external words).
    """

    config: object
    tokens: int
    dim: int
    image: bytes
    program_addr: int
    input_addr: int
    output_addr: int
    activation_words: int
    instructions: list = field(default_factory=list)     # (opcode, fields) in order
    macs: int = 0                                          # MACs the GEMMs do on real data
    trace: list = field(default_factory=list)             # TraceEntry per traced instruction
    logit_lane: int = 0                                    # model programs: the class token's
    model_classes: int = 0                                 # lane, and the logits' count
    output_words: int = 0                                  # activation words stored at the end
    sections: list = field(default_factory=list)          # the layer each instruction serves

    def section_cycles(self, retired_at, total):
        """Cycles per section (layer) from the retirement cycle of each instruction.

        An instruction that retired together with the one before it (a weight
        load run beside a GEMM) costs nothing of its own; fetching the final
        DONE counts to the last section, so the sections add up to ``total``.
        """
        totals, previous = {}, 0
        for section, retired in zip(self.sections, retired_at):
            cost = retired - previous if retired else 0
            previous = retired or previous
            totals[section] = totals.get(section, 0) + cost
        if self.sections:
            totals[self.sections[-1]] += total - previous
        return totals

    def result(self, dram):
        """What the program computes: the final tokens, or a model's logits."""
        return read_logits(self, dram) if self.model_classes else self.read_output(dram)

    def read_output(self, dram):
        """The final ``tokens x dim`` int8 activations from an external-memory image."""
        entry = self.config.act_entry_words * DRAM_WORD_BYTES
        start = self.output_addr * DRAM_WORD_BYTES
        raw = np.frombuffer(bytes(dram[start:start + self.activation_words * entry]), np.int8)
        words = raw.reshape(-1, entry)[:, :self.config.array]
        return unpack_activations(words, self.tokens, self.dim, self.config.array)


class _Image:
    def __init__(self):
        self.data = bytearray()

    def append(self, raw):
        address = len(self.data) // DRAM_WORD_BYTES
        self.data += raw
        self.data += bytes(-len(self.data) % DRAM_WORD_BYTES)
        return address

    def reserve(self, words):
        return self.append(bytes(words * DRAM_WORD_BYTES))


class _Allocator:
    """Bump allocation of scratchpad regions, with a clear error when one is full."""

    def __init__(self, name, depth):
        self.name, self.depth, self.next = name, depth, 0

    def take(self, words, what):
        start = self.next
        self.next += words
        if self.next > self.depth:
            raise ValueError(f"{what} needs {self.name} words {start}..{self.next - 1}, beyond "
                             f"{self.name.lower()}_depth={self.depth}")
        return start


#: Where each computing instruction writes: (first word, last word + 1, tile stride).
_DESTINATIONS = {
    Opcode.GEMM: lambda f: (f["c_addr"], f["c_addr"] + (f["m_tiles"] - 1) * f["c_stride"]
                            + f["n"], f["c_stride"]),
    Opcode.SOFTMAX: lambda f: (f["dst"], f["dst"] + (f["m_tiles"] - 1) * f["dst_stride"]
                               + f["length"], f["dst_stride"]),
    Opcode.LAYERNORM: lambda f: (f["dst"], f["dst"] + (f["m_tiles"] - 1) * f["dst_stride"]
                                 + f["channels"], f["dst_stride"]),
    Opcode.ADD: lambda f: (f["dst"], f["dst"] + f["count"], 0),
    Opcode.GELU: lambda f: (f["dst"], f["dst"] + f["count"], 0),
}


class _Emitter:
    """Appends instructions; in trace mode, copies each result to external memory."""

    def __init__(self, program, image, trace):
        self.program = program
        self.image = image
        self.trace = trace
        self.section = "input"

    def __call__(self, opcode, **fields):
        encode(opcode, **fields)      # checks every field now, not at run time
        self.program.instructions.append((Opcode(opcode), fields))
        self.program.sections.append(self.section)
        if self.trace and opcode in _DESTINATIONS:
            first, end, stride = _DESTINATIONS[opcode](fields)
            config = self.program.config
            address = self.image.reserve((end - first) * config.act_entry_words)
            self.program.trace.append(TraceEntry(
                index=len(self.program.instructions) - 1, opcode=Opcode(opcode),
                act_addr=first, words=end - first, dram_addr=address, stride=stride))
            self.program.instructions.append((Opcode.STORE, dict(
                spad_addr=first, dram_addr=address, count=end - first)))
            self.program.sections.append("trace")


def _check_shapes(config, blocks, tokens):
    if config.array > 64:
        raise ValueError(f"array must be at most 64 for the compiler, not {config.array}")
    if not blocks:
        raise ValueError("blocks must not be empty")
    if not isinstance(tokens, int) or tokens <= 0:
        raise ValueError(f"tokens must be a positive integer, not {tokens!r}")
    dim = blocks[0].dim
    for index, block in enumerate(blocks):
        if block.dim != dim:
            raise ValueError(f"block {index} has dim {block.dim}, block 0 has {dim}")
        if block.head_dim % config.array:
            raise ValueError(f"head dimension must be a multiple of the array size "
                             f"{config.array}, not {block.head_dim} (block {index})")
        for name, depth in (("dim", block.dim), ("hidden", block.hidden), ("tokens", tokens)):
            if depth > config.k_max:
                raise ValueError(f"{name} {depth} exceeds k_max={config.k_max}: a GEMM "
                                 f"reduces over it")
    return dim


class _Builder:
    """Emits a program over activation regions; shared by :func:`compile_blocks` and
    :func:`compile_model`."""

    def __init__(self, config, blocks, tokens, trace, extra_regions=()):
        self.config = config
        self.lanes = config.array
        self.tokens = tokens
        self.token_tiles = tiles(tokens, self.lanes)
        self.dim = _check_shapes(config, blocks, tokens)
        self.image = _Image()
        self.program = CompiledProgram(config=config, tokens=tokens, dim=self.dim, image=b"",
                                       program_addr=0, input_addr=0, output_addr=0,
                                       activation_words=self.token_tiles * self.dim)
        self.emit = _Emitter(self.program, self.image, trace)
        act = _Allocator("ACT", config.act_depth)
        dim, hidden = self.dim, max(block.hidden for block in blocks)
        widths = (("x", dim), ("normalized", dim), ("qkv", 3 * dim), ("scores", tokens),
                  ("probabilities", tokens), ("context", dim), ("sublayer", dim),
                  ("x1", dim), ("mlp", hidden), ("x2", dim), *extra_regions)
        self.regions = {name: act.take(self.token_tiles * width, f"activation region {name}")
                        for name, width in widths}
        self.weight_slot = 0

    def load_activations(self, matrix, region):
        words = pack_activations(matrix, self.lanes)
        address = self.image.append(pack_entries(Space.ACT, words, self.config))
        self.emit(Opcode.LOAD, space=Space.ACT, dram_addr=address,
                  spad_addr=self.regions[region], count=len(words))
        return address

    def take_weight_slot(self, words, what):
        """The other half of the weight scratchpad, so the next operand can be
        loaded while the current GEMM reads."""
        half = self.config.wgt_depth // 2
        if words > half:
            raise ValueError(f"{what} needs {words} WGT words, but half of "
                             f"wgt_depth={self.config.wgt_depth} holds {half}")
        base = self.weight_slot * half
        self.weight_slot ^= 1
        return base

    def load_weights(self, matrix, what):
        words = pack_weights(matrix, self.lanes)
        base = self.take_weight_slot(len(words), what)
        self.emit(Opcode.LOAD, space=Space.WGT, dram_addr=self.image.append(
            pack_entries(Space.WGT, words, self.config)), spad_addr=base, count=len(words))
        return base

    def gemm(self, a, a_width, b, b_stride, c, c_width, p, k, n, m_tiles=None, rows=None):
        self.emit(Opcode.GEMM, a_addr=a, a_stride=a_width, b_addr=b, b_stride=b_stride,
                  c_addr=c, c_stride=c_width, p_addr=p, k=k,
                  m_tiles=m_tiles or self.token_tiles, n=n)
        self.program.macs += (rows or self.tokens) * k * n

    def linear(self, layer, weights, src, src_width, dst, prm, m_tiles=None, rows=None):
        k, n = layer.weight.shape
        self.gemm(src, src_width, weights, k, dst, n, prm, k, n, m_tiles, rows)

    def load_params(self, layers, requants, what):
        """PRM entries for ``layers`` then per-tensor ``requants``; returns their offsets."""
        prm = _Allocator("PRM", self.config.prm_depth)
        offsets, entries = {}, []
        for name, layer in layers:
            offsets[name] = prm.take(layer.weight.shape[1], f"{what} {name} params")
            entries.append((layer.bias, layer.multiplier, layer.shift))
        for name, requant, count in requants:
            offsets[name] = prm.take(count, f"{what} {name} params")
            entries.append((np.zeros(count, np.int64), np.full(count, requant.multiplier),
                            np.full(count, requant.shift)))
        merged = [np.concatenate([entry[i] for entry in entries]) for i in range(3)]
        self.emit(Opcode.LOAD, space=Space.PRM, dram_addr=self.image.append(
            pack_entries(Space.PRM, merged, self.config)), spad_addr=0, count=prm.next)
        return offsets

    def load_layernorms(self, params_list):
        gamma = np.concatenate([p.gamma for p in params_list])
        beta = np.concatenate([p.beta for p in params_list])
        if len(gamma) > self.config.lnp_depth:
            raise ValueError(f"LayerNorm parameters need {len(gamma)} LNP entries, beyond "
                             f"lnp_depth={self.config.lnp_depth}")
        self.emit(Opcode.LOAD, space=Space.LNP, dram_addr=self.image.append(
            pack_entries(Space.LNP, (gamma, beta), self.config)), spad_addr=0,
            count=len(gamma))

    def layernorm(self, params, lnp_addr, src, dst):
        self.emit(Opcode.LAYERNORM, src=src, src_stride=self.dim, dst=dst, dst_stride=self.dim,
                  m_tiles=self.token_tiles, channels=self.dim, lnp_addr=lnp_addr,
                  eps=params.eps, multiplier=params.multiplier, shift=params.shift)

    def add(self, x, y, dst, residual):
        self.emit(Opcode.ADD, x=x, y=y, dst=dst, count=self.token_tiles * self.dim,
                  x_multiplier=residual.x_multiplier, y_multiplier=residual.y_multiplier,
                  shift=residual.shift)

    def block(self, index, block, qkv_weights, next_block=None):
        """One encoder block on region ``x``, result in region ``x`` again.

        Returns the weight address of ``next_block``'s QKV, loaded beside this
        block's last GEMM.
        """
        regions, dim, head_dim = self.regions, self.dim, block.head_dim
        tokens, token_tiles, lanes = self.tokens, self.token_tiles, self.lanes
        self.emit.section = f"block {index} attention"
        prm = self.load_params(
            (("qkv", block.qkv), ("proj", block.proj), ("fc1", block.fc1), ("fc2", block.fc2)),
            (("score", block.score, tokens), ("context", block.context, head_dim)),
            f"block {index}")
        self.load_layernorms((block.ln1, block.ln2))
        self.emit(Opcode.LOAD, space=Space.TBL, dram_addr=self.image.append(
            pack_entries(Space.TBL, block.gelu_table, self.config)), spad_addr=0,
            count=256 // TABLE_ENTRIES_PER_WORD)
        # Attention.
        self.layernorm(block.ln1, 0, regions["x"], regions["normalized"])
        self.linear(block.qkv, qkv_weights, regions["normalized"], dim, regions["qkv"],
                    prm["qkv"])
        for head in range(block.heads):
            q = regions["qkv"] + head * head_dim
            keys = self.take_weight_slot(token_tiles * head_dim, f"block {index} keys")
            self.emit(Opcode.COPY_TO_WGT, src=q + dim, src_stride=3 * dim, dst=keys,
                      tiles=token_tiles, words=head_dim)
            self.gemm(q, 3 * dim, keys, head_dim, regions["scores"], tokens, prm["score"],
                      head_dim, tokens)
            e = block.softmax
            self.emit(Opcode.SOFTMAX, src=regions["scores"], src_stride=tokens,
                      dst=regions["probabilities"], dst_stride=tokens, m_tiles=token_tiles,
                      length=tokens, ratio=e.ratio, alpha=e.alpha, beta=e.beta, gamma=e.gamma)
            values = self.take_weight_slot(token_tiles * head_dim, f"block {index} values")
            self.emit(Opcode.TRANSPOSE_TO_WGT, src=q + 2 * dim, src_stride=3 * dim, dst=values,
                      dst_stride=token_tiles * lanes, token_tiles=token_tiles,
                      channel_tiles=head_dim // lanes)
            self.gemm(regions["probabilities"], tokens, values, token_tiles * lanes,
                      regions["context"] + head * head_dim, dim, prm["context"], tokens,
                      head_dim)
        proj = self.load_weights(block.proj.weight, f"block {index} proj")
        self.linear(block.proj, proj, regions["context"], dim, regions["sublayer"], prm["proj"])
        self.emit.section = f"block {index} mlp"
        fc1 = self.load_weights(block.fc1.weight, f"block {index} fc1")
        self.add(regions["x"], regions["sublayer"], regions["x1"], block.residual1)
        # MLP.
        self.layernorm(block.ln2, dim, regions["x1"], regions["normalized"])
        self.linear(block.fc1, fc1, regions["normalized"], dim, regions["mlp"], prm["fc1"])
        fc2 = self.load_weights(block.fc2.weight, f"block {index} fc2")
        self.emit(Opcode.GELU, src=regions["mlp"], dst=regions["mlp"],
                  count=token_tiles * block.hidden)
        self.linear(block.fc2, fc2, regions["mlp"], block.hidden, regions["sublayer"],
                    prm["fc2"])
        next_qkv = None
        if next_block is not None:
            next_qkv = self.load_weights(next_block.qkv.weight, f"block {index + 1} qkv")
        self.add(regions["x1"], regions["sublayer"], regions["x2"], block.residual2)
        regions["x"], regions["x2"] = regions["x2"], regions["x"]
        return next_qkv

    def blocks(self, blocks, first_qkv):
        qkv = first_qkv
        for index, block in enumerate(blocks):
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            qkv = self.block(index, block, qkv, following)

    def finish(self, region, words):
        """STORE ``words`` activation words of ``region``, DONE, and lay out the program."""
        config, program = self.config, self.program
        self.emit.section = "output"
        program.output_addr = self.image.reserve(words * config.act_entry_words)
        program.output_words = words
        self.emit(Opcode.STORE, spad_addr=self.regions[region], dram_addr=program.output_addr,
                  count=words)
        self.emit(Opcode.DONE)
        program.program_addr = self.image.append(b"".join(
            encode(opcode, **fields).to_bytes(32, "little")
            for opcode, fields in program.instructions))
        program.image = bytes(self.image.data)
        return program


def compile_blocks(config, blocks, x, *, trace=False):
    """Compile ``blocks`` applied in turn to int8 tokens ``x`` (N x C).

    With ``trace``, every computing instruction is followed by a STORE of the
    words it wrote, so a co-verification mismatch can be traced to the first
    instruction whose result differs (:attr:`CompiledProgram.trace`).

    Raises
    ------
    ValueError
        When a shape does not fit the configured scratchpads (naming the region
        and the depth), a head dimension is not a multiple of the array size, or
        a reduction exceeds ``k_max``.
    """
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 2:
        raise ValueError(f"input tokens must be a 2-D int8 array, not {x.dtype} of shape "
                         f"{x.shape}")
    builder = _Builder(config, blocks, x.shape[0], trace)
    if x.shape[1] != builder.dim:
        raise ValueError(f"input tokens must have {builder.dim} channels, not {x.shape[1]}")
    builder.program.input_addr = builder.load_activations(x, "x")
    # Each weight load is emitted right after the GEMM before it (into the
    # other half of WGT), where the hardware runs it during that GEMM.
    builder.blocks(blocks, builder.load_weights(blocks[0].qkv.weight, "block 0 qkv"))
    return builder.finish("x", builder.program.activation_words)


def compile_model(config, model, patches, *, trace=False):
    """Compile a whole :class:`QuantizedVit` for one image's int8 patch features.

    Patch embedding (a GEMM over the patches plus a zero row for the class
    token), the ADD of the position table, every block, the final LayerNorm,
    and the head GEMM on the class token's tile; the logits tile is stored.
    Read the class token's logits with :func:`read_logits`.
    """
    shape = model.shape
    patches = np.asarray(patches)
    if patches.dtype != np.int8 or patches.shape != (shape.patches, shape.patch_features):
        raise ValueError(f"patches must be int8 of shape {(shape.patches, shape.patch_features)}"
                         f", not {patches.dtype} of shape {patches.shape}")
    if shape.patch_features > config.k_max:
        raise ValueError(f"patch features {shape.patch_features} exceed k_max={config.k_max}")
    builder = _Builder(config, list(model.blocks), shape.tokens, trace,
                       extra_regions=(("patches", shape.patch_features),
                                      ("logits", shape.classes)))
    regions, dim = builder.regions, builder.dim
    rows = np.concatenate([patches, np.zeros((1, shape.patch_features), np.int8)])
    builder.program.input_addr = builder.load_activations(rows, "patches")
    builder.load_activations(model.position, "x1")
    builder.emit.section = "patch embedding"
    prm = builder.load_params((("patch", model.patch),), (), "patch embedding")
    weights = builder.load_weights(model.patch.weight, "patch embedding")
    builder.linear(model.patch, weights, regions["patches"], shape.patch_features,
                   regions["sublayer"], prm["patch"])
    qkv = builder.load_weights(model.blocks[0].qkv.weight, "block 0 qkv")
    builder.add(regions["sublayer"], regions["x1"], regions["x"], model.embed)
    builder.blocks(list(model.blocks), qkv)
    builder.emit.section = "head"
    builder.load_layernorms((model.norm,))
    builder.layernorm(model.norm, 0, regions["x"], regions["normalized"])
    prm = builder.load_params((("head", model.head),), (), "head")
    head = builder.load_weights(model.head.weight, "head")
    class_tile = shape.patches // config.array
    builder.linear(model.head, head, regions["normalized"] + class_tile * dim, dim,
                   regions["logits"], prm["head"], m_tiles=1, rows=1)
    program = builder.finish("logits", shape.classes)
    program.logit_lane = shape.patches % config.array
    program.model_classes = shape.classes
    return program


def read_logits(program, dram):
    """The class token's int8 logits from a model program's external memory."""
    entry = program.config.act_entry_words * DRAM_WORD_BYTES
    start = program.output_addr * DRAM_WORD_BYTES
    classes = program.model_classes
    raw = np.frombuffer(bytes(dram[start:start + classes * entry]), np.int8)
    return raw.reshape(classes, entry)[:, program.logit_lane].copy()


def _power_of_two(value, minimum=16):
    return 1 << (max(value, minimum) - 1).bit_length()


def config_for_model(model, array):
    """:func:`config_for` for a whole :class:`QuantizedVit`."""
    shape = model.shape
    return config_for(list(model.blocks), shape.tokens, array,
                      extra_width=shape.patch_features + shape.classes,
                      extra_depth=max(shape.patch_features, shape.classes),
                      extra_weights=max(tiles(shape.dim, array) * shape.patch_features,
                                        tiles(shape.classes, array) * shape.dim))


def config_for(blocks, tokens, array, *, extra_width=0, extra_depth=0, extra_weights=0):
    """The smallest power-of-two scratchpads that hold ``blocks`` on ``tokens`` tokens.

    The compiler's own allocation decides; this only sizes the buffers so a
    simulation does not carry megabytes of unused memory. ``extra_width``
    adds activation words per token tile, ``extra_depth`` a reduction depth
    and parameter count, ``extra_weights`` a weight matrix's words (patch
    embedding and head of a whole model).
    """
    from vitforge.hw.accel.config import AcceleratorConfig

    dim = blocks[0].dim
    hidden = max(block.hidden for block in blocks)
    token_tiles = tiles(tokens, array)
    act = token_tiles * (9 * dim + 2 * tokens + hidden + extra_width)   # compile_blocks' regions
    weights = max(max(tiles(layer.weight.shape[1], array) * layer.weight.shape[0]
                      for layer in (block.qkv, block.proj, block.fc1, block.fc2))
                  for block in blocks)
    weights = max(weights, token_tiles * max(block.head_dim for block in blocks), extra_weights)
    params = max(max(5 * block.dim + block.hidden + tokens + block.head_dim
                     for block in blocks), extra_depth)
    return AcceleratorConfig(array=array, act_depth=_power_of_two(act),
                             wgt_depth=_power_of_two(2 * weights),
                             prm_depth=_power_of_two(params), lnp_depth=_power_of_two(2 * dim),
                             k_max=_power_of_two(max(dim, hidden, tokens, extra_depth)))
