"""``fxtract merge``: join the partial manifests of independent ``--num-shards`` jobs."""

from __future__ import annotations

import click

from . import CONTEXT_SETTINGS, _user_errors


@click.command(
    name="merge", context_settings=CONTEXT_SETTINGS, short_help="Merge the manifests of --num-shards jobs."
)
@click.argument("path", metavar="DIR", type=click.Path(exists=True, file_okay=False))
def merge_command(path: str) -> None:
    """Merge what independent jobs (--num-shards K --shard-index I) wrote to DIR into its manifest.json.

    The last job to finish merges by itself; run this when it could not tell it was the last (jobs
    finishing together, a filesystem slow to show the others' files). Refuses, writing nothing, when
    units are missing (naming them and their jobs) or the jobs ran different commands.

    \b
    Example:
      fxtract merge feats/
    """
    from .._distributed import merge_jobs

    with _user_errors():
        manifest = merge_jobs(path)
    click.echo(
        f"fxtract: merged {manifest['rows']} samples in {len(manifest['shards'])} shards "
        f"({manifest['writers']} job(s)) -> {path}; complete",
        err=True,
    )
