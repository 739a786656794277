import sys

from vidclip.cli import main

sys.exit(main())
