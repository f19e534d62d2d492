"""The accelerator's control and status registers: the one source of the register map.

The AXI4-Lite register block, ``regmap.json``, ``regmap.h`` and the drivers are all
generated from :data:`REGISTERS`.
"""

from dataclasses import asdict, dataclass, fields
import json

from .isa import COUNTER_CLASSES, SIDE_CLASSES
from .config import AcceleratorConfig

__all__ = ["Register", "REGISTERS", "regmap_json", "regmap_header", "REGISTER_BYTES"]

REGISTER_BYTES = 4
#: One CYCLES_* register per counter class from here, then the profile registers:
#: a new counter class moves them, and the HW_* block leaves room for 14 classes.
_CLASS_CYCLES = 0x20
_PROFILE = _CLASS_CYCLES + REGISTER_BYTES * len(COUNTER_CLASSES)
_HARDWARE = 0x60
#: One CYCLES_BESIDE_* register per class of SIDE_CLASSES from here: room for 16 HW_* fields.
_SIDE_CYCLES = 0xA0
if _PROFILE + 2 * REGISTER_BYTES > _HARDWARE:
    raise AssertionError(f"{len(COUNTER_CLASSES)} counter classes overlap the HW_* registers")
if _HARDWARE + REGISTER_BYTES * len(fields(AcceleratorConfig)) > _SIDE_CYCLES:
    raise AssertionError(f"{len(fields(AcceleratorConfig))} HW_* registers overlap the "
                         f"CYCLES_BESIDE_* registers")


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str        # "rw", "ro", or "w1c" (write 1 to clear)
    description: str
    strobes: int = 0   # of an "rw" register: bits that pulse for one cycle when written 1


REGISTERS = (
    Register("CONTROL", 0x00, "rw", "bit 0: start (write 1; reads 0); bit 1: interrupt "
             "enable; bit 2: abort the run (write 1; reads 0)", strobes=0b101),
    Register("STATUS", 0x04, "ro", "bit 0: busy; bit 1: done (every write acknowledged); "
             "bits 3..2: error code; bit 4: AXI bus error since start; bits 6..5: its "
             "response (2: SLVERR, 3: DECERR); bit 7: it answered a write; bit 8: the run "
             "was stopped (bus error or abort)"),
    Register("PROGRAM_ADDR", 0x08, "rw", "index of the first instruction's 16-byte word"),
    Register("IMAGE_BASE_LO", 0x0C, "rw", "byte address of the memory image, bits 31..0"),
    Register("IMAGE_BASE_HI", 0x10, "rw", "byte address of the memory image, bits 63..32"),
    Register("IRQ_STATUS", 0x14, "w1c", "bit 0: the program finished (write 1 to clear)"),
    Register("ERROR_PC", 0x18, "ro", "index of the instruction that raised the error"),
    Register("CYCLES", 0x1C, "ro", "cycles from start to done"),
    *(Register(f"CYCLES_{name.upper()}", _CLASS_CYCLES + REGISTER_BYTES * index, "ro",
               f"cycles spent in the {name} instruction class")
      for index, name in enumerate(COUNTER_CLASSES)),
    Register("PROFILE_INDEX", _PROFILE, "rw",
             "instruction whose retirement PROFILE_CYCLES shows"),
    Register("PROFILE_CYCLES", _PROFILE + REGISTER_BYTES, "ro",
             "CYCLES when instruction PROFILE_INDEX retired in the last run; 0 if it retired "
             "with the one before it or is beyond the 4096th"),
    *(Register(f"HW_{name.upper()}", _HARDWARE + REGISTER_BYTES * index, "ro",
               f"the hardware's AcceleratorConfig.{name}")
      for index, name in enumerate(field.name for field in fields(AcceleratorConfig))),
    *(Register(f"CYCLES_BESIDE_{name.upper()}", _SIDE_CYCLES + REGISTER_BYTES * index, "ro",
               f"cycles {name} instructions ran beside a GEMM, hidden by it")
      for index, name in enumerate(SIDE_CLASSES)),
)


def regmap_json():
    """The register map as JSON text."""
    return json.dumps({"register_bytes": REGISTER_BYTES,
                       "registers": [asdict(register) for register in REGISTERS]}, indent=2) + "\n"


def regmap_header():
    """The register map as a C header (byte offsets)."""
    lines = ["/* vitforge accelerator registers: generated from vitforge.hw.accel.regmap. */",
             "#ifndef VITFORGE_REGMAP_H", "#define VITFORGE_REGMAP_H", ""]
    for register in REGISTERS:
        lines.append(f"/* {register.access}: {register.description} */")
        lines.append(f"#define VITFORGE_{register.name} 0x{register.offset:02X}u")
    lines += ["", "#endif", ""]
    return "\n".join(lines)
