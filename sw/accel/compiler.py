"""Compiler: integer encoder blocks -> an accelerator program and its memory image."""

from dataclasses import dataclass, field

import numpy as np

from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.isa import Opcode, Space, encode
from vitforge.sw.gemm.layout import pack_activations, pack_weights, tiles, unpack_activations

from .memory import TABLE_ENTRIES_PER_WORD, pack_entries

__all__ = ["CompiledProgram", "TraceEntry", "compile_blocks", "config_for"]


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

    def __call__(self, opcode, **fields):
        encode(opcode, **fields)      # checks every field now, not at run time
        self.program.instructions.append((Opcode(opcode), fields))
        if self.trace and opcode in _DESTINATIONS:
            first, end, stride = _DESTINATIONS[opcode](fields)
            config = self.program.config
            address = self.image.reserve((end - first) * config.act_entry_words)
            self.program.trace.append(TraceEntry(
                index=len(self.program.instructions) - 1, opcode=Opcode(opcode),
                act_addr=first, words=end - first, dram_addr=address, stride=stride))
            self.program.instructions.append((Opcode.STORE, dict(
                spad_addr=first, dram_addr=address, count=end - first)))


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
    tokens = x.shape[0]
    dim = _check_shapes(config, blocks, tokens)
    if x.shape[1] != dim:
        raise ValueError(f"input tokens must have {dim} channels, not {x.shape[1]}")
    lanes = config.array
    token_tiles = tiles(tokens, lanes)
    image = _Image()
    program = CompiledProgram(config=config, tokens=tokens, dim=dim, image=b"",
                              program_addr=0, input_addr=0, output_addr=0,
                              activation_words=token_tiles * dim)
    emit = _Emitter(program, image, trace)

    act = _Allocator("ACT", config.act_depth)
    hidden = max(block.hidden for block in blocks)
    regions = {name: act.take(token_tiles * width, f"activation region {name}") for name, width
               in (("x", dim), ("normalized", dim), ("qkv", 3 * dim), ("scores", tokens),
                   ("probabilities", tokens), ("context", dim), ("sublayer", dim),
                   ("x1", dim), ("mlp", hidden), ("x2", dim))}
    program.input_addr = image.append(pack_entries(Space.ACT, pack_activations(x, lanes),
                                                   config))
    emit(Opcode.LOAD, space=Space.ACT, dram_addr=program.input_addr, spad_addr=regions["x"],
         count=program.activation_words)
    weight_slot = [0]

    def take_weight_slot(words, what):
        """The other half of the weight scratchpad, so the next operand can be
        loaded while the current GEMM reads."""
        half = config.wgt_depth // 2
        if words > half:
            raise ValueError(f"{what} needs {words} WGT words, but half of "
                             f"wgt_depth={config.wgt_depth} holds {half}")
        base = weight_slot[0] * half
        weight_slot[0] ^= 1
        return base

    def load_weights(matrix, what):
        words = pack_weights(matrix, lanes)
        base = take_weight_slot(len(words), what)
        emit(Opcode.LOAD, space=Space.WGT, dram_addr=image.append(
            pack_entries(Space.WGT, words, config)), spad_addr=base, count=len(words))
        return base

    def gemm(a, a_width, b, b_stride, c, c_width, p, k, n):
        emit(Opcode.GEMM, a_addr=a, a_stride=a_width, b_addr=b, b_stride=b_stride, c_addr=c,
             c_stride=c_width, p_addr=p, k=k, m_tiles=token_tiles, n=n)
        program.macs += tokens * k * n

    def linear(layer, weights, src, src_width, dst, prm):
        gemm(src, src_width, weights, layer.weight.shape[0], dst, layer.weight.shape[1], prm,
             layer.weight.shape[0], layer.weight.shape[1])

    # Each weight load is emitted right after the GEMM before it (into the
    # other half of WGT), where the hardware runs it during that GEMM.
    next_qkv = load_weights(blocks[0].qkv.weight, "block 0 qkv")
    for index, block in enumerate(blocks):
        head_dim = block.head_dim
        prm = _Allocator("PRM", config.prm_depth)
        prm_regions = {}
        entries = []
        for name, layer in (("qkv", block.qkv), ("proj", block.proj), ("fc1", block.fc1),
                            ("fc2", block.fc2)):
            prm_regions[name] = prm.take(layer.weight.shape[1], f"block {index} {name} params")
            entries.append((layer.bias, layer.multiplier, layer.shift))
        for name, requant, count in (("score", block.score, tokens),
                                     ("context", block.context, head_dim)):
            prm_regions[name] = prm.take(count, f"block {index} {name} params")
            entries.append((np.zeros(count, np.int64), np.full(count, requant.multiplier),
                            np.full(count, requant.shift)))
        merged = [np.concatenate([entry[i] for entry in entries]) for i in range(3)]
        emit(Opcode.LOAD, space=Space.PRM, dram_addr=image.append(
            pack_entries(Space.PRM, merged, config)), spad_addr=0, count=prm.next)
        if 2 * dim > config.lnp_depth:
            raise ValueError(f"LayerNorm parameters need {2 * dim} LNP entries, beyond "
                             f"lnp_depth={config.lnp_depth}")
        emit(Opcode.LOAD, space=Space.LNP, dram_addr=image.append(pack_entries(
            Space.LNP, (np.concatenate([block.ln1.gamma, block.ln2.gamma]),
                        np.concatenate([block.ln1.beta, block.ln2.beta])), config)),
             spad_addr=0, count=2 * dim)
        emit(Opcode.LOAD, space=Space.TBL, dram_addr=image.append(
            pack_entries(Space.TBL, block.gelu_table, config)), spad_addr=0,
             count=256 // TABLE_ENTRIES_PER_WORD)

        def layernorm(params, lnp_addr, src, dst):
            emit(Opcode.LAYERNORM, src=src, src_stride=dim, dst=dst, dst_stride=dim,
                 m_tiles=token_tiles, channels=dim, lnp_addr=lnp_addr, eps=params.eps,
                 multiplier=params.multiplier, shift=params.shift)

        # Attention.
        layernorm(block.ln1, 0, regions["x"], regions["normalized"])
        linear(block.qkv, next_qkv, regions["normalized"], dim, regions["qkv"],
               prm_regions["qkv"])
        for head in range(block.heads):
            q = regions["qkv"] + head * head_dim
            keys = take_weight_slot(token_tiles * head_dim, f"block {index} keys")
            emit(Opcode.COPY_TO_WGT, src=q + dim, src_stride=3 * dim, dst=keys,
                 tiles=token_tiles, words=head_dim)
            gemm(q, 3 * dim, keys, head_dim, regions["scores"], tokens, prm_regions["score"],
                 head_dim, tokens)
            e = block.softmax
            emit(Opcode.SOFTMAX, src=regions["scores"], src_stride=tokens,
                 dst=regions["probabilities"], dst_stride=tokens, m_tiles=token_tiles,
                 length=tokens, ratio=e.ratio, alpha=e.alpha, beta=e.beta, gamma=e.gamma)
            values = take_weight_slot(token_tiles * head_dim, f"block {index} values")
            emit(Opcode.TRANSPOSE_TO_WGT, src=q + 2 * dim, src_stride=3 * dim, dst=values,
                 dst_stride=token_tiles * lanes, token_tiles=token_tiles,
                 channel_tiles=head_dim // lanes)
            gemm(regions["probabilities"], tokens, values, token_tiles * lanes,
                 regions["context"] + head * head_dim, dim, prm_regions["context"], tokens,
                 head_dim)
        proj = load_weights(block.proj.weight, f"block {index} proj")
        linear(block.proj, proj, regions["context"], dim, regions["sublayer"],
               prm_regions["proj"])
        fc1 = load_weights(block.fc1.weight, f"block {index} fc1")
        r = block.residual1
        emit(Opcode.ADD, x=regions["x"], y=regions["sublayer"], dst=regions["x1"],
             count=token_tiles * dim, x_multiplier=r.x_multiplier,
             y_multiplier=r.y_multiplier, shift=r.shift)
        # MLP.
        layernorm(block.ln2, dim, regions["x1"], regions["normalized"])
        linear(block.fc1, fc1, regions["normalized"], dim, regions["mlp"], prm_regions["fc1"])
        fc2 = load_weights(block.fc2.weight, f"block {index} fc2")
        emit(Opcode.GELU, src=regions["mlp"], dst=regions["mlp"],
             count=token_tiles * block.hidden)
        linear(block.fc2, fc2, regions["mlp"], block.hidden, regions["sublayer"],
               prm_regions["fc2"])
        if index + 1 < len(blocks):
            next_qkv = load_weights(blocks[index + 1].qkv.weight, f"block {index + 1} qkv")
        r = block.residual2
        emit(Opcode.ADD, x=regions["x1"], y=regions["sublayer"], dst=regions["x2"],
             count=token_tiles * dim, x_multiplier=r.x_multiplier,
             y_multiplier=r.y_multiplier, shift=r.shift)
        regions["x"], regions["x2"] = regions["x2"], regions["x"]

    program.output_addr = image.reserve(program.activation_words * config.act_entry_words)
    emit(Opcode.STORE, spad_addr=regions["x"], dram_addr=program.output_addr,
         count=program.activation_words)
    emit(Opcode.DONE)
    program.program_addr = image.append(b"".join(
        encode(opcode, **fields).to_bytes(32, "little")
        for opcode, fields in program.instructions))
    program.image = bytes(image.data)
    return program


def _power_of_two(value, minimum=16):
    return 1 << (max(value, minimum) - 1).bit_length()


def config_for(blocks, tokens, array):
    """The smallest power-of-two scratchpads that hold ``blocks`` on ``tokens`` tokens.

    The compiler's own allocation decides; this only sizes the buffers so a
    simulation does not carry megabytes of unused memory.
    """
    from vitforge.hw.accel.config import AcceleratorConfig

    dim = blocks[0].dim
    hidden = max(block.hidden for block in blocks)
    token_tiles = tiles(tokens, array)
    act = token_tiles * (9 * dim + 2 * tokens + hidden)      # the regions compile_blocks takes
    weights = max(max(tiles(layer.weight.shape[1], array) * layer.weight.shape[0]
                      for layer in (block.qkv, block.proj, block.fc1, block.fc2))
                  for block in blocks)
    weights = max(weights, token_tiles * max(block.head_dim for block in blocks))
    params = max(5 * block.dim + block.hidden + tokens + block.head_dim for block in blocks)
    return AcceleratorConfig(array=array, act_depth=_power_of_two(act),
                             wgt_depth=_power_of_two(2 * weights),
                             prm_depth=_power_of_two(params), lnp_depth=_power_of_two(2 * dim),
                             k_max=_power_of_two(max(dim, hidden, tokens)))
