"""The ``otel-hakgal`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from otel_hakgal.config import ConfigError, describe, load_config, probe_config

EXIT_CONFIG_ERROR = 2


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as error:
        print(f"otel-hakgal: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    for note in config.notes:
        print(f"otel-hakgal: note: {note}", file=sys.stderr)
    # Valid, yet unable to work here: setup() would run it, losing what that backend gets.
    problems = probe_config(config)
    if problems:
        lines = "\n  ".join(problems)
        print(f"otel-hakgal: the configuration is valid, but does not work here:\n  {lines}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    print(json.dumps(describe(config), indent=2, default=str))
    return 0


def _demo(args: argparse.Namespace, rest: Sequence[str]) -> int:
    try:
        from otel_hakgal.demo.run import main as demo_main  # the demo is loaded only for this subcommand
    except ModuleNotFoundError as error:
        print(
            f"otel-hakgal demo: {error.name} is not installed; install the demo with: pip install 'otel_hakgal[demo]'",
            file=sys.stderr,
        )
        return EXIT_CONFIG_ERROR
    from otel_hakgal.pipeline import BackendStartError

    try:
        return int(demo_main(list(rest)))
    except (ConfigError, BackendStartError) as error:  # a bad OTEL_HAKGAL_STRICT is a line, not a traceback
        print(f"otel-hakgal demo: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def _report(args: argparse.Namespace) -> int:
    from otel_hakgal.report import PrometheusQueryError, render, snapshot_from_prometheus

    if args.prometheus:
        try:
            snapshot = snapshot_from_prometheus(args.prometheus, window=args.window)
        except PrometheusQueryError as error:
            print(f"otel-hakgal report: {error}", file=sys.stderr)
            return 1
    else:
        if args.window:
            print("otel-hakgal report: --window needs --prometheus", file=sys.stderr)
            return EXIT_CONFIG_ERROR
        from otel_hakgal.demo.run import workload_metrics  # the demo is loaded only without --prometheus

        snapshot = workload_metrics()
    print(render(snapshot), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otel-hakgal", description="OpenTelemetry instrumentation for HAK-GAL.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check-config",
        help="validate a configuration and print it resolved, secrets masked",
        description="Resolve the configuration (arguments > environment > file > defaults) and print it. "
        "Exits 2 when it is invalid.",
    )
    check.add_argument("file", nargs="?", help="TOML config file (default: $OTEL_HAKGAL_CONFIG)")
    selftest = commands.add_parser(
        "selftest",
        help="send a test error, message, log line and trace to every configured backend",
        description="The seed guide's integration test: reports per backend what happened; exits 1 if any failed.",
    )
    selftest.add_argument("--config", help="TOML config file (default: $OTEL_HAKGAL_CONFIG)")
    report = commands.add_parser(
        "report",
        help="print the four alert indicators against their thresholds, and a table by command, prover, provider",
        description="Reads a Prometheus server that scrapes the prometheus backend, or, without --prometheus, "
        "runs the demo's scripted workload in this process and reads its in-process metrics.",
    )
    report.add_argument("--prometheus", metavar="URL", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    report.add_argument(
        "--window",
        metavar="DURATION",
        help="with --prometheus: only the last DURATION (PromQL, e.g. 1h); default: since the processes started",
    )
    commands.add_parser("demo", help="run the HAK-GAL reference service with a scripted workload", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "check-config":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _check_config(args)
    if args.command == "selftest":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        from otel_hakgal.selftest import run_selftest

        return run_selftest(args.config)
    if args.command == "report":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _report(args)
    return _demo(args, rest)


if __name__ == "__main__":
    sys.exit(main())
