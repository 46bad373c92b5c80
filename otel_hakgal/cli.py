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


def _add_collector_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from otel_hakgal.collector_config import (
        DEFAULT_DECISION_WAIT_S,
        DEFAULT_GATEWAY_LISTEN,
        DEFAULT_SAMPLER_LISTEN,
        DEFAULT_SAMPLERS,
    )

    command = commands.add_parser(
        "collector-config",
        help="write the OpenTelemetry Collector tier's gateway.yaml and sampler.yaml from the layer's TOML",
        description="Generates the gateway collector's configuration (otlp -> loadbalancing by trace id) and a "
        "sampling collector's (otlp -> tail_sampling with the policies of [sampling.tail] -> otlphttp to the "
        "[otlp] endpoint and Sentry's OTLP endpoint when a Sentry DSN is configured). Exits 2 on a "
        "configuration error.",
    )
    command.add_argument("--config", help="TOML config file (default: $OTEL_HAKGAL_CONFIG)")
    command.add_argument("--out", metavar="DIR", help="write gateway.yaml and sampler.yaml here (default: print both)")
    command.add_argument(
        "--gateway-listen",
        metavar="HOST:PORT",
        default=DEFAULT_GATEWAY_LISTEN,
        help=f"the gateway's OTLP/HTTP receiver, where the apps send (default {DEFAULT_GATEWAY_LISTEN})",
    )
    command.add_argument(
        "--samplers",
        metavar="HOST:PORT,...",
        default=",".join(DEFAULT_SAMPLERS),
        help=f"the sampling collectors the gateway routes to (default {','.join(DEFAULT_SAMPLERS)})",
    )
    command.add_argument(
        "--sampler-listen",
        metavar="HOST:PORT",
        default=DEFAULT_SAMPLER_LISTEN,
        help=f"a sampling collector's OTLP/gRPC receiver (default {DEFAULT_SAMPLER_LISTEN})",
    )
    command.add_argument(
        "--decision-wait",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_DECISION_WAIT_S,
        help=f"how long a sampling collector holds a trace before deciding (default {DEFAULT_DECISION_WAIT_S:g})",
    )
    command.add_argument(
        "--backend", metavar="URL", help="OTLP/HTTP base URL the collectors export to (default: [otlp] endpoint)"
    )


def _without_out(argv: Sequence[str]) -> list[str]:
    """``argv`` less ``--out DIR``: the files name the command that makes them, wherever they are written."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return kept


def _collector_config(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from otel_hakgal.collector_config import CollectorConfigError, CollectorOptions, generate, write

    try:
        config = load_config(args.config)
        options = CollectorOptions(
            gateway_listen=args.gateway_listen,
            samplers=tuple(address.strip() for address in args.samplers.split(",") if address.strip()),
            sampler_listen=args.sampler_listen,
            decision_wait_s=args.decision_wait,
            backend=args.backend,
        )
        files = generate(config, options, command=["otel-hakgal", *_without_out(argv)])
    except (ConfigError, CollectorConfigError) as error:
        print(f"otel-hakgal collector-config: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if args.out is None:
        print("\n".join(f"--- # {generated.name}\n{generated.text}" for generated in files), end="")
        return 0
    for path in write(files, args.out):
        print(f"otel-hakgal collector-config: wrote {path}", file=sys.stderr)
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
    _add_collector_config(commands)
    commands.add_parser("demo", help="run the HAK-GAL reference service with a scripted workload", add_help=False)
    argv = list(sys.argv[1:] if argv is None else argv)
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
    if args.command == "collector-config":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _collector_config(args, argv)
    return _demo(args, rest)


if __name__ == "__main__":
    sys.exit(main())
