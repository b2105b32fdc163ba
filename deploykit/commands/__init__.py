"""One module per CLI command: parse options, call one library function, print."""


def text_table(header, rows) -> list[str]:
    """Left-aligned columns two spaces apart, for the commands' plain-text listings."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [header, *rows]]


import click  # noqa: E402  (the helpers above need no click)


class Renamed(click.Option):
    """An option whose old spellings (`old=`) still parse but are left out of --help.

    One parameter, so `--output DIR` and `-o DIR` land in the same place with no merging
    in the command body; kept for one release after a flag is renamed (see README's table)."""

    def __init__(self, param_decls, old=(), **kwargs):
        self.old_opts = tuple(old)
        super().__init__([*param_decls, *self.old_opts], **kwargs)

    def get_help_record(self, ctx):
        opts = self.opts
        self.opts = [o for o in opts if o not in self.old_opts]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = opts


class LabelColumn(click.ParamType):
    """--label-column: an integer is an index (negative counts from the end), other text a CSV header name."""

    name = "INDEX|NAME"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            if not text:
                self.fail("give a column index or a CSV header name", param, ctx)
            return text


LABEL_COLUMN = LabelColumn()
LABEL_COLUMN_HELP = "CSV column holding the labels: an index (0 first, -1 last) or its header name."


_UNITS = {"latency.us.p99": " µs", "arena.used": " B"}


def failed_thresholds(cases) -> list[str]:
    """One line per failed threshold: the figure, its value, the limit and by how much it missed,
    so a CI log says what failed without opening report.md."""
    lines = []
    for case in cases or ():
        if case.get("passed"):
            continue
        figure, value, limit, op = case["figure"], case.get("value"), case["limit"], case["op"]
        if value is None:
            lines.append(f"{figure} was not measured (required {op} {_figure(figure, limit)})")
            continue
        miss = (limit - value) if op == ">=" else (value - limit)
        how = "short by" if op == ">=" else "over by"
        by = _figure(figure, miss)
        lines.append(f"{figure} = {_figure(figure, value)}, required {op} {_figure(figure, limit)}: {how} {by}")
    return lines


def _figure(figure: str, value) -> str:
    if figure.endswith("fraction"):  # as the flag takes it: --min-agreement 0.99
        return f"{value:.4g}"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return text + _UNITS.get(figure, "")


def counters(counts: dict | None) -> str:
    """Link counters as words for a log: 'none' or '2 retries, 1 crc error' (not a Python dict)."""
    shown = [f"{n:,} {_counter_name(key, n)}" for key, n in (counts or {}).items() if n]
    return ", ".join(shown) or "none"


def _counter_name(key: str, n: int) -> str:
    words = key.replace("_", " ").replace("crc", "CRC")
    if n == 1 and words.endswith("s"):  # 'retries' -> 'retry', 'resets' -> 'reset'
        words = words[:-3] + "y" if words.endswith("ies") else words[:-1]
    return words
