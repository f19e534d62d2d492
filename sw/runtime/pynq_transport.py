"""The runtime driver's transport on the board: PYNQ's overlay, MMIO, buffers and interrupts."""

import asyncio
from dataclasses import dataclass
import importlib

import numpy as np

from vitforge.errors import ConfigError, ToolchainError

__all__ = ["PynqTransport", "PynqBuffer"]

#: The accelerator's cell name in the block design of ``vitforge generate``.
IP_NAME = "accel"


@dataclass(frozen=True)
class PynqBuffer:
    array: object      # the pynq buffer (a NumPy array in contiguous, device-visible memory)
    address: int       # its physical address


def _import_pynq():
    try:
        return importlib.import_module("pynq")
    except ImportError as error:
        raise ToolchainError("the PYNQ transport needs the 'pynq' package, which comes with a "
                             "PYNQ board image; on other machines use the simulation "
                             "transport") from error


class PynqTransport:
    """:class:`AcceleratorDriver` transport for a ZCU102 running PYNQ.

    Loads ``bitfile`` (its ``.hwh`` beside it, as ``vitforge generate``'s
    Vivado script exports them), maps the accelerator's registers and waits
    for its interrupt through PYNQ's ``Interrupt`` (an AXI interrupt
    controller in the block design forwards it).

    Parameters
    ----------
    bitfile : str or Path
    timeout_s : float
        How long :meth:`wait_interrupt` waits.
    poll_interval_s : float
        Sleep between two status polls.
    pynq_module : module or None
        The ``pynq`` package; imported on first use when not given.
    """

    poll_limit = 100_000

    def __init__(self, bitfile="vitforge.bit", *, timeout_s=10.0, poll_interval_s=1e-4,
                 pynq_module=None):
        self._pynq = pynq_module if pynq_module is not None else _import_pynq()
        self.overlay = self._pynq.Overlay(str(bitfile))
        if IP_NAME not in self.overlay.ip_dict:
            raise ConfigError(f"bitfile {bitfile} has no IP named {IP_NAME!r}; it has "
                              f"{', '.join(sorted(self.overlay.ip_dict)) or 'none'}")
        ip = self.overlay.ip_dict[IP_NAME]
        self._mmio = self._pynq.MMIO(ip["phys_addr"], ip["addr_range"])
        self._interrupt = self._pynq.Interrupt(f"{IP_NAME}/irq")
        self._timeout_s = timeout_s
        self._poll_interval_s = poll_interval_s

    def allocate(self, nbytes):
        array = self._pynq.allocate(shape=(nbytes,), dtype=np.uint8)
        return PynqBuffer(array, int(array.device_address))

    def free(self, buffer):
        buffer.array.freebuffer()

    async def write_buffer(self, buffer, data):
        buffer.array[:] = np.frombuffer(data, np.uint8)
        buffer.array.flush()

    async def read_buffer(self, buffer):
        buffer.array.invalidate()
        return buffer.array.tobytes()

    async def read_register(self, offset):
        return int(self._mmio.read(offset))

    async def write_register(self, offset, value):
        self._mmio.write(offset, value)

    async def wait_interrupt(self):
        try:
            await asyncio.wait_for(self._interrupt.wait(), self._timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no interrupt within {self._timeout_s} s") from None

    async def pause(self):
        await asyncio.sleep(self._poll_interval_s)
