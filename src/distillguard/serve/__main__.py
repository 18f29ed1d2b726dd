"""``python -m distillguard.serve --host H --port P ...`` (the same options as ``distillguard serve``)."""

import typer

from .cli import serve

if __name__ == "__main__":
    typer.run(serve)
