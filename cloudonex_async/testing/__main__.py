"""Run the sandbox from the shell: ``python -m cloudonex_async.testing --port 8080``."""

from __future__ import annotations

import argparse
import asyncio

from ._sandbox import Faults, SandboxServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every sandbox option, for this command and ``cloudonex sandbox``."""
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="the port to listen on (8080)")
    parser.add_argument("--api-key", default="sandbox-key", help="the one valid key (sandbox-key)")
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
    faults = parser.add_argument_group("faults (each a share of requests, 0 to 1)")
    faults.add_argument("--error-rate", type=float, default=0.0, help="error answers")
    faults.add_argument("--error-status", type=int, default=500, help="their HTTP status")
    faults.add_argument("--drop-rate", type=float, default=0.0, help="dropped connections")
    faults.add_argument("--stall-rate", type=float, default=0.0, help="answers that stall")
    faults.add_argument("--stall-seconds", type=float, default=30.0, help="how long they stall")
    faults.add_argument("--html-rate", type=float, default=0.0, help="HTML error pages")
    faults.add_argument("--malformed-rate", type=float, default=0.0, help="cut-off JSON bodies")
    faults.add_argument("--empty-rate", type=float, default=0.0, help="empty 200 bodies")
    faults.add_argument(
        "--after-processing",
        type=float,
        default=0.5,
        help="share of write faults that strike after the record was stored",
    )
    faults.add_argument("--seed", type=int, default=None, help="for repeatable faults")
    parser.add_argument(
        "--paging",
        choices=("meta", "total_records", "plain", "ignore", "stuck"),
        default="meta",
        help="documented style: data + meta, meta with the record count only, no meta, "
        "every record at once, always page 1",
    )
    parser.add_argument("--page-size", type=int, default=20, help="default listing page size")
    parser.add_argument("--max-page-size", type=int, default=1000, help="largest page served")
    parser.add_argument(
        "--batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="whether POST /api/v2/batch/<resource> exists",
    )
    parser.add_argument("--batch-max", type=int, default=100, help="records per batch at most")
    parser.add_argument("--seed-customers", type=int, default=0, help="start with N customers")
    parser.add_argument(
        "--rate-limit-headers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="documented style: whether answers carry X-RateLimit-* headers",
    )
    parser.add_argument(
        "--path-prefix",
        default="",
        metavar="PATH",
        help="serve the site in a sub-directory (/crm: the API at /crm/api/v2/)",
    )
    parser.add_argument(
        "--ng-routes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="whether /?ng=api/v2/... reaches the API (off: a host that hands only /api/ to PHP)",
    )
    parser.add_argument(
        "--strip-authorization",
        action="store_true",
        help="drop the Authorization header, as Apache with CGI/FastCGI does",
    )


def serve(args: argparse.Namespace) -> None:
    """Run a sandbox with the parsed options until interrupted."""

    async def run() -> None:
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
            faults=Faults(
                error_rate=args.error_rate,
                error_status=args.error_status,
                drop_rate=args.drop_rate,
                stall_rate=args.stall_rate,
                stall_seconds=args.stall_seconds,
                html_rate=args.html_rate,
                malformed_rate=args.malformed_rate,
                empty_rate=args.empty_rate,
                after_processing=args.after_processing,
                seed=args.seed,
            ),
            paging=args.paging,
            default_page_size=args.page_size,
            max_page_size=args.max_page_size,
            batch=args.batch,
            batch_max=args.batch_max,
            rate_limit_headers=args.rate_limit_headers,
            strip_authorization=args.strip_authorization,
            path_prefix=args.path_prefix,
            ng_routes=args.ng_routes,
        )
        sandbox.seed(
            "customers",
            [
                {"account": f"Customer {n}", "email": f"customer{n}@example.com"}
                for n in range(1, args.seed_customers + 1)
            ],
        )
        async with sandbox:
            route = (
                "/api/v2/"
                if sandbox.url_rewriting
                else "/?ng=api/v2/"
                if sandbox.ng_routes
                else " (no URL form reaches the API: rewriting and ?ng= are both off)"
            )
            print(
                f"CloudOnex sandbox ({sandbox.style} style) at {sandbox.base_url}{route} "
                f"(key: {sandbox.api_key})"
            )
            print("Ctrl-C stops it.", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except OSError as error:  # the port is taken (or the address is not this machine's)
        raise SystemExit(
            f"cloudonex sandbox: cannot listen on {args.host}:{args.port}: "
            f"{error.strerror or error}; is another program (an earlier sandbox?) using "
            "it? Stop it, or pick another --port"
        ) from None


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m cloudonex_async.testing", description="Run a CloudOnex API sandbox."
    )
    add_arguments(parser)
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
