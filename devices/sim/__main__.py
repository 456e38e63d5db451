"""`python -m devices.sim` runs the simulator."""

import sys

from devices.sim import cli_main

sys.exit(cli_main(sys.argv[1:]))
