import sys

from kai.cli import main

sys.exit(main())
