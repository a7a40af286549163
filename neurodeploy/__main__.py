"""``python -m neurodeploy``: the same command line as the ``neurodeploy`` script."""

from .cli import main

raise SystemExit(main())
