"""Driving a valid/ready stream component from a testbench, with optional stalls."""

from vitforge.errors import WatchdogError

__all__ = ["stream_through"]


async def stream_through(pins, beats, expected, *, rng=None, valid_rate=1.0, ready_rate=1.0,
                         max_cycles, source="i", sink="o"):
    """Send ``beats`` into stream ``source`` and collect ``expected`` beats from ``sink``.

    Payloads are the integers of the ports' bits. With ``rng``, each cycle the
    source offers its next beat with probability ``valid_rate`` and the sink
    is ready with probability ``ready_rate`` (random stalls on both sides);
    without, both are always on.

    Returns
    -------
    outputs : list of int
    cycles : int
        Cycles from the first accepted input to the last output, inclusive.

    Raises
    ------
    WatchdogError
        If the outputs are not all there within ``max_cycles``.
    """
    outputs = []
    sent = 0
    first_accept = last_output = None
    for cycle in range(max_cycles):
        offer = sent < len(beats) and (rng is None or rng.random() < valid_rate)
        ready = rng is None or rng.random() < ready_rate
        pins.set(f"{source}.valid", int(offer))
        if offer:
            pins.set(f"{source}.payload", beats[sent])
        pins.set(f"{sink}.ready", int(ready))
        await pins.settle()
        if offer and pins.get(f"{source}.ready"):
            sent += 1
            first_accept = cycle if first_accept is None else first_accept
        if ready and pins.get(f"{sink}.valid"):
            outputs.append(pins.get(f"{sink}.payload"))
            last_output = cycle
        await pins.tick()
        if len(outputs) == expected:
            pins.set(f"{source}.valid", 0)
            pins.set(f"{sink}.ready", 0)
            return outputs, last_output - first_accept + 1
    raise WatchdogError(f"stream {sink} gave {len(outputs)} of {expected} beats within "
                        f"{max_cycles} cycles")
