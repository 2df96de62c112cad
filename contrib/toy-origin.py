#!/usr/bin/env python3
"""A toy HTTP origin for the README's examples of health-check steering (nearest, weight_header).

    contrib/toy-origin.py ADDRESS PORT [--delay MS] [--weight W]

answers every GET with 200 after MS milliseconds (what `policy: nearest` measures) and,
with --weight, an `X-LB-Weight: W` header (what `weight_header` reads). Each request is
served on its own thread, so one slow answer does not delay the next check.
"""

import argparse
import http.server
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--delay", type=float, default=0, help="milliseconds before answering")
    parser.add_argument("--weight", help="the X-LB-Weight header's value")
    args = parser.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(args.delay / 1000)
            self.send_response(200)
            if args.weight is not None:
                self.send_header("X-LB-Weight", args.weight)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    http.server.ThreadingHTTPServer((args.address, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
