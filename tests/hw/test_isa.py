"""The instruction set table: encoding, layouts, rules, formulas on ints and in hardware, docs."""

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from vitforge.hw.accel.isa import (COUNTER_CLASSES, INSTRUCTION_BITS, ISA, LOAD_HOSTS,
                                   SIDE_LOADS, Instruction, Live, LiveState, Opcode, OpcodeSpec,
                                   Region, Space, decode, encode, load_may_run_beside, resolve,
                                   written_activations)
from vitforge.hw.accel.accelerator import UNITS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "isa.md"
RESERVED = set()         # none at present; GEMM_SPARSE was until it was defined
DEFINED = [opcode for opcode, spec in ISA.items() if not spec.reserved]


def random_fields(rng, opcode):
    return {name: int(rng.integers(0, 1 << field.width, dtype=np.uint64))
            for name, field in ISA[opcode].fields.items()}


def test_every_opcode_round_trips_with_extreme_field_values():
    for opcode in DEFINED:
        fields = ISA[opcode].fields
        for pick in (lambda width: 0, lambda width: (1 << width) - 1,
                     lambda width: 0b1010 % (1 << width)):
            values = {name: pick(field.width) for name, field in fields.items()}
            word = encode(opcode, **values)
            assert 0 <= word < 1 << INSTRUCTION_BITS
            decoded = decode(word)
            assert decoded.opcode == opcode and decoded.fields == values


def test_layouts_are_the_encoding():
    """The StructLayout of each opcode reads and builds exactly the words encode() writes."""
    rng = np.random.default_rng(0)
    for opcode in DEFINED:
        spec = ISA[opcode]
        assert spec.layout.size <= INSTRUCTION_BITS, opcode
        assert spec.layout["opcode"].offset == 0 and spec.layout["opcode"].width == 8
        for _ in range(20):
            values = random_fields(rng, opcode)
            word = encode(opcode, **values)
            const = spec.layout.from_bits(word)
            assert const.opcode == opcode
            assert {name: getattr(const, name) for name in values} == values, "seed 0"
            assert spec.layout.const({"opcode": int(opcode), **values}).as_bits() == word


def test_reserved_opcodes_are_refused():
    assert {opcode for opcode, spec in ISA.items() if spec.reserved} == RESERVED
    for opcode in RESERVED:
        spec = ISA[opcode]
        assert not spec.fields and spec.unit is None and not spec.reads and not spec.writes
        with pytest.raises(ValueError, match=rf"^opcode {opcode.name} is reserved and has no "
                                             r"encoding yet$"):
            encode(opcode)
        with pytest.raises(ValueError, match=rf"^opcode {opcode.name} is reserved$"):
            decode(int(opcode))


def test_rules_per_opcode():
    expected = {  # unit, counter, fields that must not be zero
        Opcode.LOAD: ("dma", "load_store", ("count",)),
        Opcode.STORE: ("dma", "load_store", ("count",)),
        Opcode.LOAD_SPARSE: ("dma", "load_store", ("tiles", "blocks", "kept_rows", "block_shift")),
        Opcode.GEMM: ("gemm", "gemm", ("k", "m_tiles", "n")),
        Opcode.GEMM_SPARSE: ("gemm", "gemm", ("k", "m_tiles", "n", "depth")),
        Opcode.GELU: ("eltwise", "eltwise", ("count",)),
        Opcode.SOFTMAX: ("softmax", "softmax", ("m_tiles", "length")),
        Opcode.LAYERNORM: ("layernorm", "layernorm", ("m_tiles", "channels")),
        Opcode.ADD: ("eltwise", "eltwise", ("count",)),
        Opcode.COPY_TO_WGT: ("moves", "move", ("tiles", "words")),
        Opcode.TRANSPOSE_TO_WGT: ("moves", "move", ("token_tiles", "channel_tiles")),
        Opcode.TOKEN_SELECT: ("selector", "select", ("channels", "heads", "tokens")),
        Opcode.TOKEN_MEAN: ("selector", "select", ("words", "group", "dst_tiles")),
    }
    for opcode, spec in ISA.items():
        assert (spec.unit, spec.counter, spec.nonzero) == expected.get(opcode, (None, None, ())), \
            opcode
    # The register map depends on this order.
    assert COUNTER_CLASSES == ("fetch", "load_store", "gemm", "softmax", "layernorm", "eltwise",
                               "move", "select", "stall")
    assert {spec.unit for spec in ISA.values() if spec.unit} <= set(UNITS)


def test_live_fields_per_opcode():
    """Every field that counts tokens may be live, and the ``live`` field is the last one."""
    expected = {
        Opcode.GEMM: {"m_tiles": Live.TILES, "n": Live.TOKENS, "k": Live.TOKENS},
        Opcode.GEMM_SPARSE: {"m_tiles": Live.TILES},
        Opcode.GELU: {"count": Live.TILE_WORDS},
        Opcode.SOFTMAX: {"m_tiles": Live.TILES, "length": Live.TOKENS},
        Opcode.LAYERNORM: {"m_tiles": Live.TILES},
        Opcode.ADD: {"count": Live.TILE_WORDS},
        Opcode.COPY_TO_WGT: {"tiles": Live.TILES},
        Opcode.TRANSPOSE_TO_WGT: {"token_tiles": Live.TILES},
        Opcode.TOKEN_SELECT: {"tokens": Live.TOKENS, "alive": Live.ALIVE},
        Opcode.TOKEN_MEAN: {"alive": Live.ALIVE, "dst_tiles": Live.TILES},
    }
    for opcode, spec in ISA.items():
        assert dict(spec.live) == expected.get(opcode, {}), opcode
        if spec.live:
            last = max(spec.fields.values(), key=lambda field: field.offset)
            assert spec.fields["live"] is last and last.width == len(spec.live), opcode


def test_resolve_replaces_only_flagged_fields_and_reports_excess():
    order = [name for name, _ in ISA[Opcode.GEMM].live]
    fields = dict(a_addr=0, a_stride=4, b_addr=0, b_stride=4, c_addr=8, c_stride=40, p_addr=0,
                  k=40, m_tiles=5, n=40, gelu=1, b_act=1, residual=0, r_addr=0, r_multiplier=0,
                  c_multiplier=0, r_shift=0)
    flags = (1 << order.index("m_tiles")) | (1 << order.index("n"))
    gemm = decode(encode(Opcode.GEMM, **fields, live=flags))
    resolved, exceeding = resolve(gemm, LiveState.of(tokens=13, alive=9, array=4))
    assert {**fields, "m_tiles": 4, "n": 13, "live": flags} == resolved.fields
    assert exceeding == []
    resolved, exceeding = resolve(gemm, LiveState.of(tokens=41, alive=9, array=4))
    assert (resolved.m_tiles, resolved.n, resolved.k, exceeding) == (11, 41, 40,
                                                                   ["m_tiles", "n"])
    add = decode(encode(Opcode.ADD, x=0, y=0, dst=0, count=60, tile_words=12, x_multiplier=1,
                        y_multiplier=1, shift=0, live=1))
    assert resolve(add, LiveState.of(tokens=9, alive=1, array=4))[0].count == 36
    unflagged = decode(encode(Opcode.GEMM, **fields))
    assert resolve(unflagged, LiveState.of(tokens=3, alive=1, array=4)) == (unflagged, [])


def test_empty_is_the_nonzero_rule():
    fields = dict(a_addr=0, a_stride=4, b_addr=0, b_stride=4, c_addr=8, c_stride=4, p_addr=0,
                  k=4, m_tiles=1, n=4)
    gemm = ISA[Opcode.GEMM]
    assert not gemm.empty(decode(encode(Opcode.GEMM, **fields)))
    for name in gemm.nonzero:
        assert gemm.empty(decode(encode(Opcode.GEMM, **{**fields, name: 0}))), name
    assert not ISA[Opcode.NOP].empty(decode(encode(Opcode.NOP)))


def test_regions_on_ints():
    gemm = Instruction(Opcode.GEMM, dict(a_addr=10, a_stride=6, b_addr=100, b_stride=8,
                                         c_addr=50, c_stride=5, p_addr=3, k=6, m_tiles=3, n=5,
                                         r_addr=70))
    spec = ISA[Opcode.GEMM]
    assert [tuple(region.span(gemm, 4)) for region in spec.reads] == [
        (Space.ACT, 10, 10 + 2 * 6 + 6, 6), (Space.WGT, 100, 100 + 1 * 8 + 6, 8),
        (Space.PRM, 3, 8, 0), (Space.ACT, 70, 70, 5)]
    assert tuple(spec.writes[0].span(gemm, 4)) == (Space.ACT, 50, 50 + 2 * 5 + 5, 5)
    b_in_act = Instruction(Opcode.GEMM, {**gemm.fields, "b_act": 1})
    assert tuple(spec.reads[1].span(b_in_act, 4)) == (Space.ACT, 100, 100 + 1 * 8 + 6, 8)
    # The residual's words, laid out as the result's, only with ``residual``.
    with_residual = Instruction(Opcode.GEMM, {**gemm.fields, "residual": 1})
    assert tuple(spec.reads[3].span(with_residual, 4)) == (Space.ACT, 70, 70 + 2 * 5 + 5, 5)
    table = Instruction(Opcode.LOAD, dict(space=Space.TBL, dram_addr=0, spad_addr=32, count=2))
    assert tuple(ISA[Opcode.LOAD].writes[0].span(table, 4)) == (Space.TBL, 32, 64, 0)
    turn = Instruction(Opcode.TRANSPOSE_TO_WGT, dict(src=0, src_stride=12, dst=7, dst_stride=9,
                                                     token_tiles=2, channel_tiles=3))
    assert tuple(ISA[Opcode.TRANSPOSE_TO_WGT].reads[0].span(turn, 4)) == (Space.ACT, 0, 24, 12)
    assert tuple(ISA[Opcode.TRANSPOSE_TO_WGT].writes[0].span(turn, 4)) == \
        (Space.WGT, 7, 7 + 2 * 9 + 8, 9)


def test_written_activations_are_the_act_results():
    gemm = dict(a_addr=0, a_stride=4, b_addr=0, b_stride=4, c_addr=8, c_stride=6, p_addr=0, k=4,
                m_tiles=2, n=4)
    assert tuple(written_activations(Opcode.GEMM, gemm, 4)) == (Space.ACT, 8, 18, 6)
    assert tuple(written_activations(Opcode.GELU, dict(src=0, dst=5, count=3), 4)) == \
        (Space.ACT, 5, 8, 0)
    load = dict(space=Space.ACT, dram_addr=0, spad_addr=0, count=1)
    assert written_activations(Opcode.LOAD, load, 4) is None
    copy = dict(src=0, src_stride=4, dst=0, tiles=1, words=4)
    assert written_activations(Opcode.COPY_TO_WGT, copy, 4) is None
    traced = {opcode for opcode in DEFINED
              if written_activations(opcode, random_fields(np.random.default_rng(1), opcode), 4)}
    assert traced == {Opcode.GEMM, Opcode.GEMM_SPARSE, Opcode.GELU, Opcode.SOFTMAX,
                      Opcode.LAYERNORM, Opcode.ADD, Opcode.TOKEN_SELECT, Opcode.TOKEN_MEAN}


def test_sparse_regions_on_ints():
    load = Instruction(Opcode.LOAD_SPARSE, dict(dram_addr=0, spad_addr=8, tiles=3, blocks=2,
                                                kept_rows=5, block_shift=3))
    assert [tuple(region.span(load, 4)) for region in ISA[Opcode.LOAD_SPARSE].writes] == [
        (Space.WGT, 8, 38, 10), (Space.IDX, 8, 38, 10)]
    gemm = Instruction(Opcode.GEMM_SPARSE, dict(a_addr=10, a_stride=32, b_addr=8, b_stride=10,
                                                c_addr=80, c_stride=6, p_addr=0, k=10,
                                                m_tiles=2, n=12, depth=32))
    assert [tuple(region.span(gemm, 4)) for region in ISA[Opcode.GEMM_SPARSE].reads] == [
        (Space.ACT, 10, 10 + 32 + 32, 32), (Space.WGT, 8, 38, 10), (Space.IDX, 8, 38, 10),
        (Space.PRM, 0, 12, 0)]


def side_load_cases():
    """``(host opcode, host fields, load opcode, load fields, expected or None)``."""
    gemm = dict(a_addr=0, a_stride=4, b_addr=64, b_stride=16, c_addr=8, c_stride=4, p_addr=0,
                k=16, m_tiles=1, n=8)            # B: 2 tiles, words 64..96
    sparse = {**gemm, "depth": 16}               # B and IDX words 64..96
    loads = [
        (dict(space=Space.WGT, dram_addr=0, spad_addr=0, count=64), True),
        (dict(space=Space.WGT, dram_addr=0, spad_addr=96, count=10), True),
        (dict(space=Space.WGT, dram_addr=0, spad_addr=0, count=65), False),
        (dict(space=Space.WGT, dram_addr=0, spad_addr=95, count=1), False),
        (dict(space=Space.WGT, dram_addr=0, spad_addr=0, count=0), False),
        (dict(space=Space.ACT, dram_addr=0, spad_addr=200, count=4), False),
        (dict(space=Space.TBL, dram_addr=0, spad_addr=0, count=1), False),
    ]
    sparse_loads = [          # 2 tiles of 2 blocks x 4 rows: 16 WGT and IDX words
        (dict(dram_addr=0, spad_addr=48, tiles=2, blocks=2, kept_rows=4, block_shift=3), True),
        (dict(dram_addr=0, spad_addr=49, tiles=2, blocks=2, kept_rows=4, block_shift=3), False),
        (dict(dram_addr=0, spad_addr=96, tiles=2, blocks=2, kept_rows=4, block_shift=3), True),
        (dict(dram_addr=0, spad_addr=0, tiles=0, blocks=2, kept_rows=4, block_shift=3), False),
    ]
    cases = [(host, fields, Opcode.LOAD, load, expected)
             for host, fields in ((Opcode.GEMM, gemm), (Opcode.GEMM_SPARSE, sparse))
             for load, expected in loads]
    cases += [(host, fields, Opcode.LOAD_SPARSE, load, expected)
              for host, fields in ((Opcode.GEMM, gemm), (Opcode.GEMM_SPARSE, sparse))
              for load, expected in sparse_loads]
    # Parameters beside a GEMM that reads PRM words 0..8; a LayerNorm reading LNP words
    # 16..24 and an ADD (ACT only) host any load of WGT, IDX, PRM or LNP they do not read.
    parameters = [
        (dict(space=Space.PRM, dram_addr=0, spad_addr=8, count=4), True),
        (dict(space=Space.PRM, dram_addr=0, spad_addr=7, count=1), False),
        (dict(space=Space.LNP, dram_addr=0, spad_addr=0, count=100), True),
    ]
    cases += [(host, fields, Opcode.LOAD, load, expected)
              for host, fields in ((Opcode.GEMM, gemm), (Opcode.GEMM_SPARSE, sparse))
              for load, expected in parameters]
    layernorm = dict(src=0, src_stride=8, dst=64, dst_stride=8, m_tiles=2, channels=8,
                     lnp_addr=16, eps=1, multiplier=1, shift=0)
    add = dict(x=0, y=16, dst=32, count=16, x_multiplier=1, y_multiplier=1, shift=0,
               tile_words=8)
    beside_rows = [
        (dict(space=Space.LNP, dram_addr=0, spad_addr=0, count=16), True, True),
        (dict(space=Space.LNP, dram_addr=0, spad_addr=20, count=1), False, True),
        (dict(space=Space.PRM, dram_addr=0, spad_addr=0, count=64), True, True),
        (dict(space=Space.WGT, dram_addr=0, spad_addr=16, count=64), True, True),
        (dict(space=Space.ACT, dram_addr=0, spad_addr=200, count=4), False, False),
        (dict(space=Space.TBL, dram_addr=0, spad_addr=0, count=1), False, False),
    ]
    cases += [case for load, beside_layernorm, beside_add in beside_rows
              for case in ((Opcode.LAYERNORM, layernorm, Opcode.LOAD, load, beside_layernorm),
                           (Opcode.ADD, add, Opcode.LOAD, load, beside_add))]
    cases += [(Opcode.LAYERNORM, layernorm, Opcode.LOAD_SPARSE, load, load["tiles"] > 0)
              for load, _ in sparse_loads]
    rng = np.random.default_rng(2)
    for _ in range(60):
        host = LOAD_HOSTS[int(rng.integers(0, len(LOAD_HOSTS)))]
        load = SIDE_LOADS[int(rng.integers(0, 2))]
        load_fields = random_fields(rng, load)
        if load == Opcode.LOAD:
            load_fields["space"] = int(rng.integers(0, max(Space) + 1))
        cases.append((host, random_fields(rng, host), load, load_fields, None))
    return cases


@pytest.mark.parametrize("array", [4, 40])
def test_load_rule_is_the_same_on_ints_and_in_hardware(array):
    """The formulas written once give the same answer on Python ints and as Amaranth logic
    (40 lanes: ``ceil(n / array)`` by a multiply, not a power-of-two shift)."""
    cases = side_load_cases()
    for host, fields, load, load_fields, expected in cases:
        answer = load_may_run_beside(host, Instruction(host, fields), load,
                                     Instruction(load, load_fields), array)
        # The planted answers are for 4 lanes.
        assert expected is None or array != 4 or answer == expected, (host, fields, load)

    m = Module()
    words = {opcode: Signal(INSTRUCTION_BITS) for opcode in (*LOAD_HOSTS, *SIDE_LOADS)}
    allowed = {(host, load): Signal() for host in LOAD_HOSTS for load in SIDE_LOADS}
    for (host, load), signal in allowed.items():
        m.d.comb += signal.eq(load_may_run_beside(
            host, ISA[host].view(words[host]), load, ISA[load].view(words[load]), array))
    mismatches = []

    async def testbench(context):
        for host, fields, load, load_fields, _ in cases:
            context.set(words[host], encode(host, **fields))
            context.set(words[load], encode(load, **load_fields))
            python = load_may_run_beside(host, Instruction(host, fields), load,
                                         Instruction(load, load_fields), array)
            if context.get(allowed[host, load]) != python:
                mismatches.append((host, fields, load, load_fields))

    simulator = Simulator(m)
    simulator.add_testbench(testbench)
    simulator.run()
    assert not mismatches, f"seed 2, array {array}: hardware and Python disagree"


def test_bad_tables_are_rejected():
    layout = ISA[Opcode.GELU].layout
    with pytest.raises(ValueError, match=r"^GELU rules must name its fields \['beside', 'count', "
                                         r"'dst', 'live', 'src', 'tile_words'\], not "
                                         r"\['size'\]$"):
        OpcodeSpec(opcode=Opcode.GELU, layout=layout, nonzero=("size",), unit="eltwise",
                   counter="eltwise")
    with pytest.raises(ValueError, match=r"^GELU rules must name its fields .*, not \['x'\]$"):
        OpcodeSpec(opcode=Opcode.GELU, layout=layout, reads=(Region(Space.ACT, "x", "count"),))
    with pytest.raises(ValueError, match=r"^GELU counter must be one of .*, not 'gelu'$"):
        OpcodeSpec(opcode=Opcode.GELU, layout=layout, unit="eltwise", counter="gelu")
    with pytest.raises(ValueError, match=r"^GELU must have both a unit and a counter or "
                                         r"neither, not unit='eltwise', counter=None$"):
        OpcodeSpec(opcode=Opcode.GELU, layout=layout, unit="eltwise")


def test_malformed_words_are_rejected():
    with pytest.raises(ValueError, match=r"^unknown opcode 0x7e$"):
        decode(0x7E)
    with pytest.raises(ValueError, match=r"^DONE instruction has bits set outside its fields$"):
        decode(int(Opcode.DONE) | 1 << 200)
    with pytest.raises(ValueError, match=r"^GELU instruction has bits set outside its fields$"):
        decode(encode(Opcode.GELU, src=0, dst=0, count=1) | 1 << 86)


def test_bad_fields_are_rejected_when_encoding():
    with pytest.raises(ValueError, match=r"^GELU field count must lie in \[0, 1048575\], "
                                         r"not 1048576$"):
        encode(Opcode.GELU, src=0, dst=0, count=1 << 20)
    with pytest.raises(ValueError, match=r"^GELU needs fields \['beside', 'count', 'dst', 'live', "
                                         r"'src', 'tile_words'\]; missing \['count'\], unknown "
                                         r"\['size'\]$"):
        encode(Opcode.GELU, src=0, dst=0, size=3)


def rules_row(spec):
    """The row of ``docs/isa.md``'s rules table for ``spec``."""
    def listed(items, separator="; "):
        return separator.join(items) or "-"
    unit = "reserved" if spec.reserved else spec.unit or "controller"
    return (f"| `{spec.opcode.name}` | {unit} | {spec.counter or '-'} | "
            f"{listed((f'`{name}`' for name in spec.nonzero), ', ')} | "
            f"{listed(str(region) for region in spec.reads)} | "
            f"{listed(str(region) for region in spec.writes)} |")


def test_documentation_lists_every_opcode_field_and_rule():
    text = DOCS.read_text()
    for opcode, spec in ISA.items():
        row = re.search(rf"^\| `{opcode.name}` \| 0x{int(opcode):02X} \|(.*)$", text, re.M)
        assert row, f"docs/isa.md has no encoding row for {opcode.name}"
        for name, field in spec.fields.items():
            assert f"`{name}`[{field.offset}:{field.offset + field.width}]" in row[1], \
                (opcode.name, name)
        assert rules_row(spec) in text.splitlines(), \
            f"docs/isa.md's rules row for {opcode.name} must read:\n{rules_row(spec)}"
