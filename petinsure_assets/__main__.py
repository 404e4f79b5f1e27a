import sys

from petinsure_assets.cli import main

sys.exit(main())
