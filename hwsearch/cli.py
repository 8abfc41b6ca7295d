"""The `hwsearch` command: parses, calls one library function, prints.

Every `HwsearchError` (a mistake in the user's input) becomes one line on stderr and exit code 2;
anything else is a bug and keeps its traceback. Each room's commands sit in their own section below.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from hwsearch.errors import HwsearchError

app = typer.Typer(help="Co-search compressed networks and accelerator configurations.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console()


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except HwsearchError as e:
        print(f"hwsearch: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _emit_json(obj: object) -> None:
    print(json.dumps(obj, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


# ---- spaces ------------------------------------------------------------------------------------
spaces_app = typer.Typer(help="Search spaces: list them, sample and describe choices.", no_args_is_help=True)
app.add_typer(spaces_app, name="spaces")


@spaces_app.command("list")
def spaces_list() -> None:
    """List the registered search spaces."""
    from hwsearch import spaces

    for name in spaces.names():
        space = spaces.get(name)
        print(f"{name}\t{len(space.dims)} genes\treferences: {', '.join(space.references())}")


@spaces_app.command("sample")
def spaces_sample(
    name: str = typer.Argument(..., help="Space name (see `hwsearch spaces list`)."),
    seed: int = typer.Option(0, help="Seed of the random choice."),
    reference: Optional[str] = typer.Option(None, help="A named reference choice instead of a random one."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Print a choice and its NetSpec summary (layers, MACs, params, peak activation bytes)."""
    import numpy as np

    from hwsearch import spaces
    from hwsearch.errors import ConfigError

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r} is not supported; use table or json")
    space = spaces.get(name)
    choice = space.reference(reference) if reference else space.sample(np.random.default_rng(seed))
    net = space.to_netspec(choice)
    if fmt == "json":
        _emit_json({"space": name, "choice": choice, **net.summary(), "netspec": net.to_dict()})
        return
    console.print(f"[bold]{name}[/bold] choice: {json.dumps(choice)}")
    table = Table("layer", "op", "shape", "MACs", "params")
    for layer in net.layers:
        shape = f"c={layer.c} k={layer.k} {layer.in_h}x{layer.in_w}->{layer.h}x{layer.w} m={layer.m} n={layer.n}"
        table.add_row(layer.name, layer.op, shape, f"{layer.macs:,}", f"{layer.params:,}")
    console.print(table)
    s = net.summary()
    console.print(
        f"layers {s['layers']}  MACs {s['macs']:,}  params {s['params']:,}  "
        f"peak activation {s['peak_activation_bytes']:,.0f} B"
    )


if __name__ == "__main__":
    main()
