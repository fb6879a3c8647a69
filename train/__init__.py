"""XBridge training: data building, the OT alignment loss, per-stage collators and trainers (`python -m train`).

Imports the Hub bundle (`modeling_xbridge`, `processing_xbridge`) from the repository root or an installed
`xbridge`; the bundle never imports this package.
"""

import logging

# torchao (xbridge[quant]) logs at import, which the Trainer triggers through peft, that its CUDA kernels do not
# load on a CPU-only torch; the CPU int8 path used here needs none of them.
logging.getLogger("torchao").setLevel(logging.ERROR)
