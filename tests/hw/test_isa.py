"""The instruction encoding: round trips, and every malformed word rejected."""

import re
from pathlib import Path

import pytest

from vitforge.hw.accel.isa import FIELDS, INSTRUCTION_BITS, Opcode, decode, encode

DOCS = Path(__file__).resolve().parents[2] / "docs" / "isa.md"


def test_every_opcode_round_trips_with_extreme_field_values():
    for opcode, layout in FIELDS.items():
        if opcode in (Opcode.GEMM_SPARSE, Opcode.TOKEN_SELECT):
            continue
        for pick in (lambda width: 0, lambda width: (1 << width) - 1,
                     lambda width: 0b1010 % (1 << width)):
            values = {name: pick(width) for name, (_, width) in layout.items()}
            word = encode(opcode, **values)
            assert 0 <= word < 1 << INSTRUCTION_BITS
            decoded = decode(word)
            assert decoded.opcode == opcode and decoded.fields == values


def test_fields_do_not_overlap():
    for opcode, layout in FIELDS.items():
        spans = sorted(layout.values())
        for (offset, width), (next_offset, _) in zip(spans, spans[1:]):
            assert offset + width <= next_offset, opcode


def test_malformed_words_are_rejected():
    with pytest.raises(ValueError, match=r"^unknown opcode 0x7e$"):
        decode(0x7E)
    with pytest.raises(ValueError, match=r"^opcode TOKEN_SELECT is reserved$"):
        decode(int(Opcode.TOKEN_SELECT))
    with pytest.raises(ValueError, match=r"^DONE instruction has bits set outside its fields$"):
        decode(int(Opcode.DONE) | 1 << 200)


def test_bad_fields_are_rejected_when_encoding():
    with pytest.raises(ValueError, match=r"^GELU field count must lie in \[0, 1048575\], "
                                         r"not 1048576$"):
        encode(Opcode.GELU, src=0, dst=0, count=1 << 20)
    with pytest.raises(ValueError, match=r"^GELU needs fields \['count', 'dst', 'src'\]; "
                                         r"missing \['count'\], unknown \['size'\]$"):
        encode(Opcode.GELU, src=0, dst=0, size=3)
    with pytest.raises(ValueError, match=r"^opcode GEMM_SPARSE is reserved"):
        encode(Opcode.GEMM_SPARSE)


def test_documentation_lists_every_opcode_and_field():
    text = DOCS.read_text()
    for opcode, layout in FIELDS.items():
        row = re.search(rf"^\| `{opcode.name}` \| 0x{int(opcode):02X} \|(.*)$", text, re.M)
        assert row, f"docs/isa.md has no row for {opcode.name}"
        for name, (offset, width) in layout.items():
            assert f"`{name}`[{offset}:{offset + width}]" in row[1], (opcode.name, name)
