"""``python -m tedepr`` — the same as the ``tedepr`` command."""

from .cli import main

raise SystemExit(main())
