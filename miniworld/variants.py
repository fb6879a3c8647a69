"""`python -m miniworld.variants <preset> [python -m train flags]`: the ablation trainers that `python -m train`
has no command for, run through the very same code (`train.run.main`) with one extra stage preset each.

- `stage23`: stages 2 and 3 merged: task data with the prompt, stage 1's trainable set (enc map + boundary,
  dec map, decoder cross-attention), all three losses at once.
- `stage1-defect`: the released stage-1 command's defect: the decoder side stays frozen (stage 2's trainable
  set), so CE_dec and OT are computed but train nothing.
"""

from __future__ import annotations

import sys

EXTRA_PRESETS = {
    "stage23": dict(model_stage=1, record_kind="stage3", prompt=True, answers="answer_en", targets="answer_tgt",
                    source="question", lambdas=(1.0, 1.0, 6.0)),
    "stage1-defect": dict(model_stage=2, record_kind="stage1", prompt=False, answers="en_text", targets="tgt_text",
                          source="src_text", lambdas=(1.0, 1.0, 6.0)),
}


def register() -> None:
    from train.trainer import STAGES  # noqa: PLC0415

    for name, preset in EXTRA_PRESETS.items():
        STAGES.setdefault(name, preset)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRA_PRESETS:
        print(f"usage: python -m miniworld.variants {{{','.join(EXTRA_PRESETS)}}} [python -m train flags]", file=sys.stderr)
        return 2
    register()
    import train.run  # noqa: PLC0415

    # stage1-defect starts from the two bases like stage 1 (train.run decides that by name)
    original = train.run._from_bases
    train.run._from_bases = lambda key: key == "stage1-defect" or original(key)
    train.run.main(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
