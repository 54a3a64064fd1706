"""`python -m recurgen`: the command line (see recurgen/cli.py)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
