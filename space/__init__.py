"""Gradio Space for XBridge checkpoints."""
