"""``python -m ltgcast`` runs the CLI."""

from ltgcast.cli import main

raise SystemExit(main())
