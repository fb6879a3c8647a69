"""`python -m train <command> ...`: one entry point for data building and every trainer."""

import sys

COMMANDS = {
    "build-data": "make stage-1 trilingual / stages 2-3 task records by translating English with NLLB",
    "stage1": "cross-model mapping: enc map + boundary, dec map, decoder cross-attention; CE_llm + CE_dec + OT",
    "stage2": "encoder-side adaptation on task data: enc map + boundary; CE_llm",
    "stage3": "decoder-side adaptation on task data: dec map + cross-attention; CE_dec + OT",
    "encoder-only": "baseline without the decoder (MindMerger design): --encoder_stage 1 then 2; CE_llm",
    "sft": "baseline: LoRA fine-tuning of the LLM on the task data (TRL SFTTrainer)",
}


def main(argv=None, callbacks=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        lines = "\n".join(f"  {name:<13} {doc}" for name, doc in COMMANDS.items())
        print(f"usage: python -m train <command> --config train/configs/<file>.yaml [--key value ...]\n"
              f"       python -m train <command> --help\n\ncommands:\n{lines}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    command, rest = argv[0], argv[1:]
    if command == "build-data":
        from .build_data import main as build_main  # noqa: PLC0415

        return build_main(rest)
    if command == "sft":
        from .sft import main as sft_main  # noqa: PLC0415

        return sft_main(rest, callbacks=callbacks)
    from .run import main as run_main  # noqa: PLC0415

    return run_main(command, rest, callbacks=callbacks)
