"""What every `tollgate` command shares, on the stream side and in the sinks.

`pass_settings` hands a command the `Settings` read once by `tollgate` itself; `Echo` is where
the work below a command writes its progress lines (`click.echo`, `print`, a list's `append`).
"""

from __future__ import annotations

from collections.abc import Callable

import click

from pipeline.kernel.settings import Settings

Echo = Callable[[str], None]

pass_settings = click.make_pass_decorator(Settings)
