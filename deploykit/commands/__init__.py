"""One module per CLI command: parse options, call one library function, print."""


def text_table(header, rows) -> list[str]:
    """Left-aligned columns two spaces apart, for the commands' plain-text listings."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
