import sys

from lkm.cli import main

sys.exit(main())
