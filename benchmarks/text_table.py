"""The benchmarks' printed tables: right-aligned columns, a rule under the header."""


def print_columns(lines):
    """Print ``lines`` (tuples of strings, the header first) as aligned columns."""
    widths = [max(len(cell) for cell in column) for column in zip(*lines)]
    for n, line in enumerate(lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
