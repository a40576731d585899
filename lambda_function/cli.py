"""Local use without AWS or Docker: `python -m lambda_function predict|invoke|serve|openapi`.

`predict` classifies a file or URL and prints a table; `invoke` runs the Lambda handler on an event file as
`sam local invoke -e` does (API Gateway events go to the API handler, S3 events to the tagging handler); `serve`
starts the local HTTP server; `backfill` tags photos already in a bucket; `openapi` prints the API document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from lambda_function.datapath.inference import Coat
from lambda_function.datapath.model_contract import ModelContractError
from lambda_function.errors import ClassifierError
from lambda_function.local_context import LocalLambdaContext
from lambda_function.settings import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TOP_K, Settings, SettingsError
from lambda_function.tagging.backfill import DEFAULT_WORKERS
from lambda_function.tagging.batch_job import DEFAULT_PRIORITY


def main(argv: list[str] | None = None) -> int:
    """Run one command with settings read from the environment, `--model` applied on top; each command is handed
    the settings (and builds its own service from them), so nothing is passed through `os.environ`."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if getattr(args, "model", None):
            settings = replace(settings, model_path=args.model)
        status: int = args.run(args, settings)
        return status
    except (ModelContractError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lambda_function", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    predict = commands.add_parser("predict", help="classify a photo file or URL")
    predict.add_argument("source", help="a file path or an http(s) URL")
    predict.add_argument(
        "--top-k", type=int, default=DEFAULT_TOP_K, help="how many breeds to show (default %(default)s)"
    )
    predict.add_argument("--json", action="store_true", help="print the API's JSON answer instead of a table")
    predict.set_defaults(run=_predict)

    invoke = commands.add_parser("invoke", help="run the Lambda handler on an event file, like sam local invoke -e")
    invoke.add_argument("event", type=Path, help="an event JSON file, e.g. events/predict-url.json")
    invoke.set_defaults(run=_invoke)

    serve = commands.add_parser(
        "serve", help=f"serve the API on http://{DEFAULT_HOST}:{DEFAULT_PORT} (the production server)"
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)")
    serve.add_argument(
        "--workers", type=int, help="server processes, each with its own model (default: $SERVER_WORKERS or the CPUs)"
    )
    serve.set_defaults(run=_serve)

    openapi = commands.add_parser("openapi", help="print the OpenAPI document of the API")
    openapi.set_defaults(run=_openapi)

    backfill = commands.add_parser(
        "backfill",
        help="tag the photos already in s3://BUCKET/PREFIX: here (resumable), or by an S3 Batch Operations job",
    )
    backfill.add_argument("s3_url", help="s3://BUCKET/PREFIX")
    backfill.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="objects processed at once here (default %(default)s)"
    )
    batch = backfill.add_argument_group("S3 Batch Operations, for millions of photos (docs/deploy.md)")
    batch.add_argument(
        "--batch-operations",
        action="store_true",
        help="write a manifest of the image keys, upload it and create a job that runs the tagging function",
    )
    batch.add_argument("--stack", help="the deployed stack whose outputs name the role and the function")
    batch.add_argument("--role-arn", help="the role S3 Batch Operations assumes (stack output BatchOperationsRoleArn)")
    batch.add_argument("--function-arn", help="the tagging function's alias live (stack output TaggingFunctionArn)")
    batch.add_argument("--inventory-manifest", help="s3://BUCKET/.../manifest.json of an S3 Inventory to use instead")
    batch.add_argument(
        "--priority", type=int, default=DEFAULT_PRIORITY, help="the job's priority (default %(default)s)"
    )
    batch.add_argument("--yes", action="store_true", help="start the job at once instead of waiting for confirmation")
    batch.add_argument("--dry-run", action="store_true", help="print the manifest location and the job request only")
    backfill.set_defaults(run=_backfill)

    for sub in (predict, invoke, serve, backfill):
        sub.add_argument("--model", type=Path, help="a .tflite model with its .json sidecar (default: $MODEL_PATH)")
    return parser


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from lambda_function.datapath.service import BreedService
    from lambda_function.observability import logger

    if settings.observability.log_level is None:
        logger.setLevel("WARNING")  # the table is the output; keep INFO logs out unless asked for
    service = BreedService(settings)
    try:
        if args.source.startswith(("http://", "https://")):
            result = service.classify_url(args.source, args.top_k)
        else:
            result = service.classify_bytes(Path(args.source).read_bytes(), args.top_k)
    except ClassifierError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot read {args.source}: {exc.strerror}", file=sys.stderr)
        return 1
    card = service.classifier.card
    if args.json:
        from lambda_function.api.routes import predict_response

        print(json.dumps(predict_response(result, service).model_dump(), indent=2))
        return 0
    print(
        f"{args.source}  (model {card.name} {card.version}; cat detected: {_yes_no(result.cat_detected)}; "
        f"breed identified: {_yes_no(result.breed_identified)})"
    )
    if result.description is not None:
        print(f"  {result.description}  (coat: {_coat(result.coat)})")
    if result.breed_identified is False:
        print("  No clear breed: perhaps a mixed-breed cat or a breed this model does not know. Closest:")
    width = max(len(p.breed) for p in result.predictions)
    for rank, prediction in enumerate(result.predictions, start=1):
        bar = "#" * round(prediction.probability * 30)
        print(f"  {rank}. {prediction.breed:<{width}}  {prediction.probability:7.2%}  {bar}")
    return 0


def _coat(coat: Coat | None) -> str:
    if coat is None:
        return "unknown"
    return f"{coat.length or 'unclear'}, {coat.probability:.0%}"


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _invoke(args: argparse.Namespace, settings: Settings) -> int:
    from lambda_function.datapath.service import BreedService

    event = json.loads(args.event.read_text(encoding="utf-8"))
    service = BreedService(settings)  # the handler is built around it, as the deployed ones are around theirs
    if "Records" in event or "invocationSchemaVersion" in event:  # S3 notifications, S3 Batch Operations
        from lambda_function.tagging.lambda_tagging import s3_tagger, tagging_handler

        lambda_handler = tagging_handler(s3_tagger(service))
    else:
        from lambda_function.api.lambda_api import api_handler

        lambda_handler = api_handler(service)
    # EMF metrics are printed to stdout when the handler returns; keep stdout for the response alone.
    with contextlib.redirect_stdout(sys.stderr):
        response = lambda_handler(event, LocalLambdaContext())
    print(json.dumps(response, indent=2))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from lambda_function.server.serve import serve

    if args.workers:
        settings = replace(settings, server=replace(settings.server, workers=args.workers))
    serve(settings, host=args.host, port=args.port)
    return 0


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    from lambda_function.tagging.s3_objects import parse_s3_url

    try:
        bucket, prefix = parse_s3_url(args.s3_url)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.batch_operations:
        return _backfill_by_batch_operations(args, bucket, prefix)

    import boto3

    from lambda_function.datapath.service import BreedService
    from lambda_function.tagging.backfill import backfill
    from lambda_function.tagging.s3_tagging import S3Tagger

    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url)
    tagger = S3Tagger(BreedService(settings), s3, settings.s3_max_object_bytes)
    # Standard output carries the summary alone: the metrics powertools prints on its own (every 100 values, as
    # EMF JSON) go to standard error with the logs and the progress bar.
    with contextlib.redirect_stdout(sys.stderr):
        summary = backfill(tagger, bucket, prefix, workers=args.workers)
    print(json.dumps(summary))
    return 1 if summary.get("failed") else 0


def _backfill_by_batch_operations(args: argparse.Namespace, bucket: str, prefix: str) -> int:
    """No model is loaded here: the job runs the deployed tagging function."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from lambda_function.tagging.batch_job import JobTarget, submit_tagging_job, target_from_stack

    try:
        if args.role_arn and args.function_arn:
            target = JobTarget(function_arn=args.function_arn, role_arn=args.role_arn)
        elif args.stack:
            target = target_from_stack(boto3.client("cloudformation"), args.stack)
        else:
            print("error: give --stack NAME, or both --role-arn and --function-arn", file=sys.stderr)
            return 2
        submit_tagging_job(
            None if args.dry_run else boto3.client("s3"),
            None if args.dry_run else boto3.client("s3control"),
            target,
            bucket,
            prefix,
            out=sys.stdout,
            inventory_manifest=args.inventory_manifest,
            priority=args.priority,
            confirmation_required=not args.yes,
            dry_run=args.dry_run,
        )
    except (ValueError, ClientError, BotoCoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _openapi(_args: argparse.Namespace, _settings: Settings) -> int:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    from lambda_function.api.routes import build_openapi_json, router

    resolver = APIGatewayRestResolver(enable_validation=True)
    resolver.include_router(router)
    print(build_openapi_json(resolver))
    return 0
