"""Run the sandbox from the shell: ``python -m cloudonex_async.testing --port 8080``."""

from __future__ import annotations

import argparse
import asyncio

from ._sandbox import Faults, SandboxServer


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m cloudonex_async.testing", description="Run a CloudOnex API sandbox."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument(
        "--style",
        choices=("documented", "shipped"),
        default="documented",
        help="the vendor page's API, or the deployed 4.x code's behaviour",
    )
    parser.add_argument(
        "--url-rewriting",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether /api/v2/... reaches the API (default: on for documented, off for shipped)",
    )
    parser.add_argument(
        "--display-errors", action="store_true", help="shipped style: PHP errors as HTML pages"
    )
    parser.add_argument("--rate-limit", type=int, default=1000, help="requests per window")
    parser.add_argument("--rate-period", type=float, default=3600.0, help="window in seconds")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per answer")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 500 answers")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="share of dropped answers")
    parser.add_argument("--page-size", type=int, default=20, help="default listing page size")
    parser.add_argument("--seed-customers", type=int, default=0, help="start with N customers")
    args = parser.parse_args(argv)

    async def serve() -> None:
        sandbox = SandboxServer(
            api_key=args.api_key,
            host=args.host,
            port=args.port,
            style=args.style,
            url_rewriting=args.url_rewriting,
            display_errors=args.display_errors,
            rate_limit=args.rate_limit,
            rate_period=args.rate_period,
            latency=args.latency,
            faults=Faults(error_rate=args.error_rate, drop_rate=args.drop_rate),
            default_page_size=args.page_size,
        )
        sandbox.seed(
            "customers",
            [
                {"account": f"Customer {n}", "email": f"customer{n}@example.com"}
                for n in range(1, args.seed_customers + 1)
            ],
        )
        async with sandbox:
            route = "/api/v2/" if sandbox.url_rewriting else "/?ng=api/v2/"
            print(
                f"CloudOnex sandbox ({sandbox.style} style) at {sandbox.base_url}{route} "
                f"(key: {sandbox.api_key})"
            )
            print("Ctrl-C stops it.", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
