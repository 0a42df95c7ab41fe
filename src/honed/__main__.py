"""``python -m honed`` is the ``honed`` command."""

from honed.cli.main import main

main()
