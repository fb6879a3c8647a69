"""The mini-world: a small synthetic multilingual world in which the whole XBridge method runs on one CPU."""
