"""``python -m fastwt``: the same command line as ``fastwt``."""

from fastwt.cli import main

raise SystemExit(main())
