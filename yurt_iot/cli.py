"""The `yurt-iot` command: one subcommand per job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from yurt_iot import __version__

app = typer.Typer(
    name="yurt-iot",
    help="OpenYurt-compatible IoT device management for Kubernetes edge clusters.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"yurt-iot {__version__}")


@app.command()
def crds(
    out: Annotated[Path, typer.Option(help="Directory the CRD manifests are written to.")] = Path("crds"),
    check: Annotated[bool, typer.Option(help="Only check that the directory is up to date; exit 1 if not.")] = False,
) -> None:
    """Write the CRD manifests generated from the API models (the single source of truth)."""
    from yurt_iot.api.crd import crd_files, write_crds

    if check:
        wanted = crd_files()
        present = {p.name: p.read_text() for p in out.glob("*.yaml")} if out.is_dir() else {}
        stale = sorted(name for name in wanted.keys() | present.keys() if wanted.get(name) != present.get(name))
        if stale:
            typer.echo(f"{out} is stale ({', '.join(stale)}); run `yurt-iot crds --out {out}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date ({len(wanted)} CRDs)")
        return
    for path in write_crds(out):
        typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
