import sys

from hyperspy_mmdl.cli import main

sys.exit(main())
