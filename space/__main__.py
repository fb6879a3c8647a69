"""`python -m space [--model PATH_OR_ID] [--port N]`: launch the XBridge Space locally."""

from .app import main

main()
