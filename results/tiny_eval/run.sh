#!/usr/bin/env bash
# The tiny-model table of issue 4: every system on 20 MGSM problems and 20 FLORES sentences per language,
# with random tiny offline models (numbers near zero are expected: this shows the whole path runs).
# Usage: bash results/tiny_eval/run.sh [WORK_DIR]   (from the repository root; CPU is enough)
set -euo pipefail
WORK=${1:-/tmp/xbridge-tiny-eval}
OUT=results/tiny_eval
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
python - "$WORK" <<'PY'
import sys
sys.path.insert(0, "tests")
from pathlib import Path
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from tiny_bases import build_tiny_bases, seeded_bridge
from modeling_xbridge import XBridgeForConditionalGeneration
from processing_xbridge import XBridgeProcessor

work = Path(sys.argv[1])
bases = build_tiny_bases(work)
if not (work / "bridge" / "config.json").exists():
    model = seeded_bridge(XBridgeForConditionalGeneration.from_bases(bases["nmt"], bases["llm"]))
    model.save_pretrained(work / "bridge")
    XBridgeProcessor.from_bases(bases["nmt"], bases["llm"]).save_pretrained(work / "bridge")
if not (work / "sft-lora" / "adapter_config.json").exists():  # an untrained LoRA adapter: stands in for `train sft`
    llm = AutoModelForCausalLM.from_pretrained(bases["llm"])
    get_peft_model(llm, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(work / "sft-lora")
PY
BRIDGE=$WORK/bridge
# The paper's ten languages; x->y among the low-resource ones; 16 new tokens (a shared 2-core CPU).
LANGS=bn,de,en,es,fr,ja,ru,sw,th,zh
COMMON=(--limit 20 --batch_size 20 --max_new_tokens 16 --device cpu)
export OMP_NUM_THREADS=1
for system in xbridge xbridge-encoder-only direct translate-test sft; do
  model=$BRIDGE; [ "$system" = sft ] && model=$WORK/sft-lora
  python -m eval mgsm --system $system --model "$model" --langs $LANGS "${COMMON[@]}" --output_dir $OUT/runs
done
for system in xbridge xbridge-encoder-only direct translate-test nmt; do
  directions=x-en,en-x; [ "$system" = xbridge-encoder-only ] && directions=x-en  # English output only
  python -m eval flores --system $system --model "$BRIDGE" --langs $LANGS --directions $directions "${COMMON[@]}" --output_dir $OUT/runs
  if [ "$system" != xbridge-encoder-only ]; then  # x->y needs a writer of language y
    python -m eval flores --system $system --model "$BRIDGE" --langs bn,sw,th --directions x-y "${COMMON[@]}" --output_dir $OUT/runs-xy
  fi
done
python -m eval report $OUT/runs $OUT/runs-xy --output $OUT/report.md
