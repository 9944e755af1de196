"""``python -m infaas_sim.profiling``: generate and profile the built-in family into a catalog."""

import sys

from infaas_sim.profiling.build import main

sys.exit(main())
