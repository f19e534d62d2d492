"""Balanced reduction trees over lanes."""

__all__ = ["reduce_tree"]


def reduce_tree(values, combine):
    """Combine ``values`` pairwise in ``ceil(log2(len))`` levels (combinational)."""
    values = list(values)
    while len(values) > 1:
        values = [combine(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]
