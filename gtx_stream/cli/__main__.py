import sys

from gtx_stream.cli import main

sys.exit(main())
