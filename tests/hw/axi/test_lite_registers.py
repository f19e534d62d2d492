"""The AXI4-Lite register block in Amaranth's simulator, and the register map's outputs."""

import json
import re

from vitforge.hw.accel.regmap import REGISTERS, regmap_header, regmap_json
from vitforge.hw.axi.lite_registers import AxiLiteRegisters
from vitforge.hw.axi.signals import RESP_OKAY, RESP_SLVERR
from vitforge.sim.axi_lite import read_register, write_register
from vitforge.sim.pins import run_in_amaranth


def test_registers_read_write_strobe_and_errors():
    dut = AxiLiteRegisters(REGISTERS)
    seen = {}

    async def session(pins):
        pins.set("reg_STATUS", 0b1010)
        pins.set("reg_CYCLES", 123456)
        seen["write_program"] = await write_register(pins, 0x08, 0xDEADBEEF)
        seen["program"] = await read_register(pins, 0x08)
        seen["status"] = await read_register(pins, 0x04)
        seen["cycles"] = await read_register(pins, 0x1C)
        seen["write_ro"] = await write_register(pins, 0x04, 7)          # read-only: value unchanged
        seen["status_after"] = await read_register(pins, 0x04)
        seen["bad_read"] = await read_register(pins, 0xFC)
        seen["bad_write"] = await write_register(pins, 0xF0, 1)
        seen["start"] = await write_register(pins, 0x00, 0b11)
        seen["control_after"] = pins.get("reg_CONTROL")
        await write_register(pins, 0x00, 0b110)                         # abort, enable kept
        seen["control_after_abort"] = pins.get("reg_CONTROL")
        seen["control_read"] = await read_register(pins, 0x00)
        seen["irq_clear"] = await write_register(pins, 0x14, 1)
        return seen

    run_in_amaranth(dut, session)
    assert seen["write_program"] == RESP_OKAY
    assert seen["program"] == (RESP_OKAY, 0xDEADBEEF)
    assert seen["status"] == (RESP_OKAY, 0b1010)
    assert seen["cycles"] == (RESP_OKAY, 123456)
    assert seen["write_ro"] == RESP_OKAY and seen["status_after"] == (RESP_OKAY, 0b1010)
    assert seen["bad_read"] == (RESP_SLVERR, 0)
    assert seen["bad_write"] == RESP_SLVERR
    assert seen["start"] == RESP_OKAY
    assert seen["control_after"] == 0b10        # start strobe gone, interrupt enable kept
    assert seen["control_after_abort"] == 0b10  # so is the abort strobe (bit 2)
    assert seen["control_read"] == (RESP_OKAY, 0b10)


def test_header_and_json_are_the_same_map():
    described = json.loads(regmap_json())["registers"]
    defines = dict(re.findall(r"#define VITFORGE_(\w+) 0x([0-9A-F]+)u", regmap_header()))
    assert {r["name"]: r["offset"] for r in described} == \
        {name: int(offset, 16) for name, offset in defines.items()}
    assert len({r.offset for r in REGISTERS}) == len(REGISTERS)
    assert {r["name"] for r in described} >= {"CONTROL", "STATUS", "CYCLES_GEMM", "CYCLES_STALL"}
