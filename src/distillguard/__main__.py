"""``python -m distillguard``: the same CLI as the ``distillguard`` command."""

from .cli import app

app(prog_name="distillguard")
