"""Screenshot of the Space answering one of its examples: `python -m space.screenshot [--model M] [--out PNG]`.

Serves the app on 127.0.0.1, opens it in Debian's headless chromium through Playwright, clicks an example,
answers it, opens the English intermediate and saves the page (the README's `screenshot.png`).
"""

import argparse
import re
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from .app import build_demo, launch_local


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m space.screenshot")
    parser.add_argument("--model")
    parser.add_argument("--out", default=str(Path(__file__).with_name("screenshot.png")))
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument("--example", type=int, default=0, help="which example row to answer")
    args = parser.parse_args(argv)
    demo = build_demo(args.model)
    url = launch_local(demo)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator("#examples tbody tr").nth(args.example).click()
            expect(page.locator("#input-text textarea")).not_to_have_value("")
            page.get_by_text("Generation settings").click()
            tokens = page.locator("#max-new-tokens input[type=number]")
            tokens.fill(str(args.max_new_tokens))
            tokens.press("Enter")
            page.get_by_text("Generation settings").click()  # closed again: the answers matter in the picture
            page.locator("#run").click()
            expect(page.locator("#timing")).to_contain_text(re.compile("total|Error"), timeout=300_000)
            if "Error" in page.locator("#timing").inner_text():
                raise RuntimeError(f"the request failed: {page.locator('.toast-body').all_inner_texts()}")
            page.get_by_text("The LLM's English intermediate").click()
            page.wait_for_timeout(500)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        demo.close()
    print(args.out)


if __name__ == "__main__":
    main()
