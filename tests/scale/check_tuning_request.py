#!/usr/bin/env python3
"""Checks CreateHyperParameterTuningJob requests written by `mammogan sweep run --on sagemaker`, offline.

Each request goes through a botocore client with a Stubber, exactly as tests/aws/check_sagemaker_requests.py
does (its helpers are imported): botocore validates names, types and required members against the service
model, nothing leaves the machine, and sockets are disabled so a call that tried the network would fail.
botocore's validator does not check a string's pattern, maximum length or enum, nor a list's or number's
maximum, so this walks the request against the same model and checks those too (the tuning job's name,
<= 32 characters of [a-zA-Z0-9](-*[a-zA-Z0-9])*, the role ARN, the S3 URIs, the instance type...).
Then what the model cannot know: the strategy fits the ranges, the objective is one of the metric
definitions, each regex reads the METRIC lines `train` prints (the documented examples, and with
--metric-lines FILE the lines a real `mammogan train` printed in SageMaker mode: the objective's regex
must capture the validation split's value, once), the image is mammogan:sagemaker, one instance.

Before the requests it proves it can fail: a misspelt member, a missing required member and a name
against the API's pattern must each be refused.

Usage: check_tuning_request.py [--metric-lines FILE] REQUEST.json...   (exit 1 on any problem)
"""

import copy
import json
import re
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aws"))
import check_sagemaker_requests as aws  # noqa: E402  (call, refused, no_network, IMAGE, METRIC_LINES)

import botocore  # noqa: E402
import botocore.session  # noqa: E402
from botocore.exceptions import ParamValidationError  # noqa: E402

OPERATION = "create_hyper_parameter_tuning_job"
RESPONSE = {"HyperParameterTuningJobArn": "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/x"}


def input_shape():
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("CreateHyperParameterTuningJob").input_shape


def constraints(shape, value, where, problems):
    """What botocore's validator leaves out: patterns, maximum lengths and sizes, enums."""
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members:
                constraints(shape.members[k], v, f"{where}.{k}", problems)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{where}: {len(value)} items, the API takes at most {meta['max']}")
        for i, v in enumerate(value):
            constraints(shape.member, v, f"{where}[{i}]", problems)
    elif shape.type_name == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{where}: {len(value)} entries, the API takes at most {meta['max']}")
        for k, v in value.items():
            constraints(shape.key, k, f"{where} key {k!r}", problems)
            constraints(shape.value, v, f"{where}[{k!r}]", problems)
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{where}: {len(value)} characters, the API takes at most {meta['max']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            problems.append(f"{where}: {value!r} does not match the API's pattern {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            problems.append(f"{where}: {value!r} is not one of the API's values")
    elif shape.type_name in ("integer", "long") and isinstance(value, int):
        if "max" in meta and value > meta["max"]:
            problems.append(f"{where}: {value} is above the API's maximum {meta['max']}")


def validate(request, where, problems):
    try:
        aws.call("sagemaker", OPERATION, request, RESPONSE)
    except ParamValidationError as e:
        problems.append(f"{where}: refused by botocore {botocore.__version__}'s sagemaker model: " + " ".join(str(e).split()))
        return False
    before = len(problems)
    constraints(input_shape(), request, where, problems)
    return len(problems) == before


def self_test(good, problems):
    """A broken request must be refused by the same path, or passing proves nothing."""
    if not validate(good, "self-test (the first request as written)", []):
        problems.append("self-test: the first request was refused (its own problems follow)")
    misspelt = copy.deepcopy(good)
    misspelt["HyperParameterTuningJobConfig"]["Strategi"] = misspelt["HyperParameterTuningJobConfig"].pop("Strategy")
    missing = copy.deepcopy(good)
    del missing["TrainingJobDefinition"]["RoleArn"]
    bad_name = copy.deepcopy(good)
    bad_name["HyperParameterTuningJobName"] = "mammogan_sweep-with-a-name-longer-than-32"
    for what, params in [("a misspelt member", misspelt), ("a missing required member", missing),
                         ("a name against the API's pattern and length", bad_name)]:
        if validate(params, "self-test", []):
            problems.append(f"self-test: a tuning request with {what} was accepted: this check cannot fail")


def check_mammogan(request, where, lines, problems):
    config = request["HyperParameterTuningJobConfig"]
    definition = request["TrainingJobDefinition"]
    spec = definition["AlgorithmSpecification"]
    ranges = config.get("ParameterRanges", {})
    if config["Strategy"] == "Grid":
        if ranges.get("ContinuousParameterRanges") or ranges.get("IntegerParameterRanges"):
            problems.append(f"{where}: Grid with continuous or integer ranges (Grid takes categorical ones only)")
        if "MaxNumberOfTrainingJobs" in config["ResourceLimits"]:
            problems.append(f"{where}: Grid counts its training jobs itself; MaxNumberOfTrainingJobs must be left out")
    elif "MaxNumberOfTrainingJobs" not in config["ResourceLimits"]:
        problems.append(f"{where}: {config['Strategy']} without MaxNumberOfTrainingJobs")
    seeds = [r for r in ranges.get("CategoricalParameterRanges", []) if r["Name"] == "train.seed"]
    if len(seeds) != 1:
        problems.append(f"{where}: the seeds are not one categorical range of train.seed")
    tuned = {r["Name"] for kind in ranges.values() for r in kind}
    both = tuned & set(definition.get("StaticHyperParameters", {}))
    if both:
        problems.append(f"{where}: {sorted(both)} both static and tuned")
    if not aws.IMAGE.match(spec["TrainingImage"]):
        problems.append(f"{where}: TrainingImage {spec['TrainingImage']} is not an ECR mammogan:sagemaker image")
    if definition["ResourceConfig"]["InstanceCount"] != 1:
        problems.append(f"{where}: InstanceCount must be 1 (training refuses several hosts)")
    if spec["TrainingInputMode"] not in ("File", "FastFile"):
        problems.append(f"{where}: input mode {spec['TrainingInputMode']}: mammogan reads File or FastFile channels")
    channels = [c["ChannelName"] for c in definition["InputDataConfig"]]
    if channels != ["training"]:
        problems.append(f"{where}: channels {channels}: SageMaker mode reads `training` (or the only channel)")
    objective = config["HyperParameterTuningJobObjective"]["MetricName"]
    metrics = {m["Name"]: re.compile(m["Regex"]) for m in spec["MetricDefinitions"]}
    if objective not in metrics:
        problems.append(f"{where}: the objective {objective} is not one of the metric definitions {sorted(metrics)}")
        return
    if not objective.startswith("val:"):
        problems.append(f"{where}: the objective {objective} is not a validation-split metric")
    for name, rx in metrics.items():
        found = [m.group(1) for line in aws.METRIC_LINES for m in [rx.search(line)] if m]
        if name == "val:classifier.auc" and found != ["0.973100"]:
            problems.append(f"{where}: metric {name}: regex {rx.pattern} captures {found} from the documented lines")
    if lines is not None:
        for name, rx in metrics.items():
            found = [m.group(1) for line in lines for m in [rx.search(line)] if m]
            if len(found) != 1:
                problems.append(f"{where}: metric {name}: regex {rx.pattern} matches {len(found)} of train's METRIC lines, not 1")
                continue
            split = name.split(":", 1)[0]
            line = next(line for line in lines if rx.search(line))
            if not line.startswith(f"METRIC split={split} "):
                problems.append(f"{where}: metric {name} read from another line than the {split} split's: {line}")
            try:
                float(found[0])
            except ValueError:
                problems.append(f"{where}: metric {name} captures {found[0]!r}, not a number")


def main(argv):
    lines = None
    if len(argv) > 1 and argv[0] == "--metric-lines":
        lines = [line for line in Path(argv[1]).read_text().splitlines() if line.startswith("METRIC ")]
        argv = argv[2:]
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    socket.socket = aws.no_network  # type: ignore[assignment]
    socket.create_connection = aws.no_network  # type: ignore[assignment]
    problems = []
    requests = {}
    for path in argv:
        try:
            requests[path] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            problems.append(f"{path}: {e}")
    if requests:
        self_test(next(iter(requests.values())), problems)
    for path, request in requests.items():
        if validate(request, path, problems):
            check_mammogan(request, path, lines, problems)
    for p in problems:
        print(f"FAIL (tuning request): {p}", file=sys.stderr)
    if problems:
        return 1
    real = f"; {len(lines)} METRIC lines of a real train" if lines is not None else ""
    print(f"tuning requests: {len(requests)} valid for botocore {botocore.__version__} (offline; self-test refused 3 broken requests{real})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
