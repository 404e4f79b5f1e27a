from petinsure_assets.cli import run

run()
