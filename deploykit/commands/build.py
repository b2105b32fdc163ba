"""`deploykit build DIR [--board ID]`: build a rendered project with PlatformIO."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.commands.boards import boards_dir_option


@click.command("build")
@click.argument("project_dir", type=click.Path(path_type=Path))
@click.option("--board", "board_id", metavar="ID", help="The env (board id) to build; default: the project's only env.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@boards_dir_option
def build(project_dir, board_id, quiet):
    """Build a rendered project (`pio run`); record RAM and flash use in DIR/build.json."""
    from deploykit.commands.display import line_status
    from deploykit.toolchain.pio import build_project

    with line_status(f"Building {project_dir}", quiet=quiet) as on_line:
        result = build_project(project_dir, board_id, on_line=on_line)
    click.echo(f"built {result.env}: {format_sizes(result.sizes)}; log: {result.log}")


def format_sizes(sizes) -> str:
    """'RAM 49,172 / 262,144 B (18.8%), flash ...' or a note that PlatformIO gave none."""
    if sizes is None:
        return "PlatformIO printed no size report"
    parts = []
    figures = (("RAM", sizes.ram_used, sizes.ram_total), ("flash", sizes.flash_used, sizes.flash_total))
    for label, used, total in figures:
        if used is not None:
            parts.append(f"{label} {used:,} / {total:,} B ({used / total:.1%})" if total else f"{label} {used:,} B")
    return ", ".join(parts)
