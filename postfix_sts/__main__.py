"""``python -m postfix_sts`` runs the command-line interface."""

from postfix_sts.cli import main

raise SystemExit(main())
