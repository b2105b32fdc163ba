"""One module per CLI command: parse options, call one library function, print."""


def text_table(header, rows) -> list[str]:
    """Left-aligned columns two spaces apart, for the commands' plain-text listings."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]


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
