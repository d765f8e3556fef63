import sys

from quamba_edge.cli import main

sys.exit(main())
