from petinsure_assets.cli import main
from petinsure_assets.entry_point import run_and_exit

run_and_exit(main)
