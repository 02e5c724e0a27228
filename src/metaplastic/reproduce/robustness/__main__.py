"""``python -m metaplastic.reproduce.robustness``."""

from .cli import main

raise SystemExit(main())
