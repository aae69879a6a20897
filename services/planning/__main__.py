"""``python -m harness.services.planning``: run the planning service on stdin/stdout."""

from . import main

raise SystemExit(main())
