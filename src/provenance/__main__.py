"""`python -m provenance` runs the command-line interface."""

from provenance._cli import main

raise SystemExit(main())
