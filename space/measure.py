"""Time to first output of the Space, seen from a client: `python -m space.measure [--model PATH_OR_ID]`.

Serves the app on 127.0.0.1, sends one request through `gradio_client` (the English phase streams) and prints
seconds until the first non-empty English text arrives and until the final answers, for a cold request (the
model loads lazily, on it) and a warm one.
"""

import argparse
import json
import time

from gradio_client import Client

from .app import ENGLISH, build_demo, launch_local, model_id_from, pick_examples


def timed_request(client, text, src, targets, max_new_tokens):
    start, first = time.perf_counter(), None
    job = client.submit(text, src, targets, "Step-by-step math", "", max_new_tokens, 1, False, 0.7, api_name="/generate")
    for update in job:  # one item per streamed update
        if first is None and update[0]:
            first = time.perf_counter() - start
    final = job.result()
    return dict(first_output_s=round(first, 3), total_s=round(time.perf_counter() - start, 3), english=final[0][:200],
                answers=dict(zip(targets, (a[:200] for a in final[1:-1]))), server_timing=final[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m space.measure")
    parser.add_argument("--model")
    parser.add_argument("--src", default=None, help="source language code (default: the first example's)")
    parser.add_argument("--text", default=None)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    args = parser.parse_args(argv)
    demo = build_demo(args.model)
    url = launch_local(demo)
    try:
        client = Client(url, verbose=False)
        # Default request: the page's first example (an MGSM question in a language this checkpoint knows).
        example = pick_examples(demo.bridge.lang_codes)[0]
        src = args.src or example[1]
        text = args.text or example[0]
        targets = [src, ENGLISH]
        result = {"model": model_id_from(args.model), "cold": timed_request(client, text, src, targets, args.max_new_tokens),
                  "warm": timed_request(client, text, src, targets, args.max_new_tokens)}
        print(json.dumps(result, ensure_ascii=False, indent=1))
    finally:
        demo.close()


if __name__ == "__main__":
    main()
