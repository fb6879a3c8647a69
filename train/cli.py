"""`python -m train <command> ...`: one entry point for data building and every trainer."""

import sys

COMMANDS = {
    "build-data": "make stage-1 trilingual / stages 2-3 task records by translating English with NLLB",
}


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = "\n".join(f"  {name:<13} {doc}" for name, doc in COMMANDS.items())
        print(f"usage: python -m train <command> [--help] ...\n\ncommands:\n{lines}")
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    command, rest = argv[0], argv[1:]
    if command == "build-data":
        from .build_data import main as build_main  # noqa: PLC0415

        build_main(rest)
