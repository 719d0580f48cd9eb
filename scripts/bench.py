#!/usr/bin/env python3
"""Native vs llama.cpp side by side on models x weight types (edgechat/app/bench.py; = `edgechat bench`).

    .venv/bin/python scripts/bench.py [-m M] [--shape llama-1b,...] [--type Q4_0,...] [--threads 2]
                                      [--runs 3] [--prefill 512,2048] [--decode-depths 0,4096] [--json]
"""
import sys

from edgechat.app.bench import main

if __name__ == "__main__":
    sys.exit(main())
