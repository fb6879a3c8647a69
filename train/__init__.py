"""XBridge training: data building, the OT alignment loss, per-stage collators and trainers (`python -m train`).

Imports the Hub bundle (`modeling_xbridge`, `processing_xbridge`) from the repository root or an installed
`xbridge`; the bundle never imports this package.
"""
