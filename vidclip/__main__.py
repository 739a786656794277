from vidclip.cli.main import run

run()
