import sys

from stepper.cli import main

sys.exit(main())
