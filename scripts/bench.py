#!/usr/bin/env python3
"""Speed of the native engine vs llama.cpp on the same GGUF (see edgechat/app/bench.py).

    .venv/bin/python scripts/bench.py [--model M] [--threads 2] [--runs 3] [--json]
"""
import sys

from edgechat.app.bench import main

if __name__ == "__main__":
    sys.exit(main())
