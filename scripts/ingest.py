#!/usr/bin/env python3
"""Ingest policy documents: the same as `rag-prompts ingest [PATH ...] [--config FILE] [--json]`."""

import sys

from rag_prompts.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
