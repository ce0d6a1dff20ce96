"""How long the X-EI parser and the <Sip> lint take on 100 KB adversarial values.

    .venv/bin/python bench/xei_adversarial.py

Each case is built to hurt a backtracking regex (long runs with no terminator,
thousands of tokens, thousands of bare ';'). Prints the best of 5 runs in ms.
"""

from __future__ import annotations

import time

from mock_server import lint, xei

SIZE = 100_000
CASES = {
    "no terminator": "S." + "a" * SIZE,
    "many tokens": "S.a;" * (SIZE // 4),
    "bare semicolons": ";" * SIZE,
    "dots and prefixes": "S.S." * (SIZE // 4),
    "escaped twice": "S." + "%3B" * (SIZE // 3),
    "whitespace runs": "S.a;" + " " * SIZE + "E.b",
    "lowercase tokens": "s.x;" * (SIZE // 4),
}


def best_ms(fn, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> None:
    print(f"{'case':22} {'bytes':>8} {'parse ms':>9} {'lint ms':>8}")
    for name, value in CASES.items():
        uri = "sip:+15551234567@sip.synthflow.ai:32681?X-EI=" + xei.encode_hvalue(value)
        parse_ms = best_ms(lambda v=value: xei.parse(v))
        lint_ms = best_ms(lambda u=uri: lint.lint_sip_uri(u))
        print(f"{name:22} {len(value):8d} {parse_ms:9.2f} {lint_ms:8.2f}")


if __name__ == "__main__":
    main()
