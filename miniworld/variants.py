"""`python -m miniworld.variants <preset> [python -m train flags]`: the ablation trainers that `python -m train`
has no command for, run through the very same code (`train.run.main`). Both presets are declared beside the stages
(`train.trainer.STAGES`):

- `stage23`: stages 2 and 3 merged: task data with the prompt, stage 1's trainable set (enc map + boundary,
  dec map, decoder cross-attention), all three losses at once.
- `stage1-defect`: the released stage-1 command's defect: the decoder side stays frozen (stage 2's trainable
  set), so CE_dec and OT are computed but train nothing.
"""

from __future__ import annotations

import sys

PRESETS = ("stage23", "stage1-defect")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in PRESETS:
        print(f"usage: python -m miniworld.variants {{{','.join(PRESETS)}}} [python -m train flags]", file=sys.stderr)
        return 2
    import train.run  # noqa: PLC0415

    train.run.main(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
