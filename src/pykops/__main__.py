import sys

from pykops.cli.main import main

sys.exit(main())
