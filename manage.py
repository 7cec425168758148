#!/usr/bin/env python
"""Django's usual entry point; `bellwether` (bellwether/cli.py) does the same."""

from bellwether.cli import main

if __name__ == "__main__":
    main()
