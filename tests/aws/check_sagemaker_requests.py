#!/usr/bin/env python3
"""Checks the SageMaker request documents in docs/sagemaker/ against botocore's service model, offline.

Each document is the request of one API call (CreateTrainingJob, CreateModel, CreateEndpointConfig,
InvokeEndpoint). A botocore client with a Stubber makes the call: botocore validates every parameter
against the service model (names, types, required members, enums, lengths, patterns) before the Stubber
answers, so nothing leaves the machine; sockets are disabled as well, so a call that tried the network
would fail rather than pass. Then what the model cannot know about mammogan: the image is the SageMaker
flavour, one instance, File/FastFile input, the metric regexes read the METRIC lines `train` prints, the
custom attributes are ones the server accepts, and the endpoint config serves the model CreateModel makes.

Before the documents, the check proves it can fail: a misspelt member, a missing required member and a
wrong type must each be refused by the same path.

Usage: python3 tests/aws/check_sagemaker_requests.py [DOCS_DIR]   (exit 1 on any problem, one line each)
"""

import copy
import json
import re
import socket
import sys
from pathlib import Path

import botocore
import botocore.session
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

ROOT = Path(__file__).resolve().parents[2]
DOCS = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "sagemaker"

# file -> (service, operation, a valid response for the Stubber)
CALLS = {
    "create-training-job.json": ("sagemaker", "create_training_job",
                                 {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/mammogan-run-1"}),
    "create-model.json": ("sagemaker", "create_model",
                          {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/mammogan-run-1"}),
    "create-endpoint-config.json": ("sagemaker", "create_endpoint_config",
                                    {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/mammogan-run-1"}),
    "invoke-endpoint.json": ("sagemaker-runtime", "invoke_endpoint",
                             {"Body": b"\x89PNG\r\n\x1a\n", "ContentType": "image/png", "CustomAttributes": "score=0.500000"}),
}

# The image SageMaker must run: the root flavour with the bind-to-port label (README, Containers).
IMAGE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/mammogan:sagemaker(-cuda)?(@sha256:[0-9a-f]{64})?$")
# The keys crates/mammo-serve/src/custom_attributes.rs accepts (KEYS there); its unit tests pin them.
CUSTOM_ATTRIBUTE_KEYS = {"spacing_mm"}
# METRIC lines as `train` prints them (crates/mammo-serve/src/sagemaker.rs, metric_line): fixed-point
# values, each `key=value;`.
METRIC_LINES = [
    "METRIC step=100 train.classifier.loss=0.431200; train.classifier.accuracy=0.812500; train.classifier.lr=0.001000;",
    "METRIC step=200 train.classifier.loss=-0.000100; train.attribution.critic_loss=-1.250000;",
    "METRIC split=val val.classifier.auc=0.973100; val.classifier.sensitivity=0.900000; "
    "val.classifier.specificity=0.850000; val.attribution.pxap=0.412300; val.attribution.pointing_game=0.500000;",
    "METRIC split=test test.classifier.auc=0.951200; test.classifier.sensitivity=0.880000;",
]


def no_network(*_args, **_kwargs):
    raise RuntimeError("network access attempted: the check must run offline")


def client(service):
    session = botocore.session.get_session()
    # Fixed fake credentials: botocore must find no real ones (and sign nothing that is sent).
    return session.create_client(service, region_name="us-east-1",
                                 aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="example")


def call(service, operation, params, response):
    """Makes the call through the Stubber; a ParamValidationError means the model refused `params`."""
    c = client(service)
    with Stubber(c) as stub:
        stub.add_response(operation, response, copy.deepcopy(params))
        getattr(c, operation)(**params)
        stub.assert_no_pending_responses()


def refused(service, operation, params, response):
    try:
        call(service, operation, params, response)
    except ParamValidationError:
        return True
    return False


def self_test(problems):
    """The validation path must refuse broken documents, or passing the real ones proves nothing."""
    good = {"ModelName": "m", "ExecutionRoleArn": "arn:aws:iam::123456789012:role/R",
            "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mammogan:sagemaker"}}
    response = CALLS["create-model.json"][2]
    if refused("sagemaker", "create_model", good, response):
        problems.append("self-test: a valid CreateModel request was refused")
    misspelt = copy.deepcopy(good)
    misspelt["PrimaryContainer"]["Imagee"] = misspelt["PrimaryContainer"].pop("Image")
    missing = {k: v for k, v in good.items() if k != "ModelName"}
    wrong_type = copy.deepcopy(good)
    wrong_type["PrimaryContainer"]["Environment"] = {"THREADS": 2}
    for what, params in [("a misspelt member", misspelt), ("a missing required member", missing),
                         ("a number where a string belongs", wrong_type)]:
        if not refused("sagemaker", "create_model", params, response):
            problems.append(f"self-test: CreateModel with {what} was accepted: this check cannot fail")


def load(name, problems):
    path = DOCS / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        problems.append(f"{path}: {e}")
        return None


def check_mammogan(name, doc, problems):
    """What the service model cannot know."""
    where = DOCS / name
    if name == "create-training-job.json":
        spec = doc["AlgorithmSpecification"]
        if not IMAGE.match(spec["TrainingImage"]):
            problems.append(f"{where}: TrainingImage {spec['TrainingImage']} is not an ECR mammogan:sagemaker image")
        if doc["ResourceConfig"]["InstanceCount"] != 1:
            problems.append(f"{where}: InstanceCount must be 1 (training refuses several hosts)")
        modes = [spec.get("TrainingInputMode")] + [ch.get("InputMode") for ch in doc.get("InputDataConfig", [])]
        for m in modes:
            if m is not None and m not in ("File", "FastFile"):
                problems.append(f"{where}: input mode {m}: mammogan reads File or FastFile channels (Pipe is refused)")
        local = doc.get("CheckpointConfig", {}).get("LocalPath", "/opt/ml/checkpoints")
        if local != "/opt/ml/checkpoints":
            problems.append(f"{where}: CheckpointConfig.LocalPath {local}: the RUN is /opt/ml/checkpoints")
        for hp, value in doc.get("HyperParameters", {}).items():
            if not isinstance(value, str):
                problems.append(f"{where}: hyperparameter {hp}: SageMaker passes strings")
        for m in spec.get("MetricDefinitions", []):
            rx = re.compile(m["Regex"])
            found = [x.group(1) for line in METRIC_LINES for x in [rx.search(line)] if x]
            if not found:
                problems.append(f"{where}: metric {m['Name']}: regex {m['Regex']} matches no METRIC line")
            for v in found:
                try:
                    float(v)
                except ValueError:
                    problems.append(f"{where}: metric {m['Name']}: regex captures {v!r}, not a number")
    elif name == "create-model.json":
        image = doc["PrimaryContainer"]["Image"]
        if not IMAGE.match(image):
            problems.append(f"{where}: Image {image} is not an ECR mammogan:sagemaker image")
        env = doc["PrimaryContainer"].get("Environment", {})
        if "MAMMOGAN_TOKEN" in env:
            problems.append(f"{where}: MAMMOGAN_TOKEN in the environment: InvokeEndpoint sends no Authorization header")
    elif name == "invoke-endpoint.json":
        for pair in filter(None, (p.strip() for p in re.split("[;,]", doc.get("CustomAttributes", "")))):
            key = pair.split("=", 1)[0].strip()
            if "=" in pair and key not in CUSTOM_ATTRIBUTE_KEYS:
                problems.append(f"{where}: CustomAttributes {pair!r}: the server refuses key=value pairs with keys other than "
                                f"{sorted(CUSTOM_ATTRIBUTE_KEYS)}")


def main():
    socket.socket = no_network  # type: ignore[assignment]
    socket.create_connection = no_network  # type: ignore[assignment]
    problems = []
    self_test(problems)
    docs = {}
    for name, (service, operation, response) in CALLS.items():
        doc = load(name, problems)
        if doc is None:
            continue
        docs[name] = doc
        params = dict(doc)
        if name == "invoke-endpoint.json":
            params["Body"] = b"\x89PNG\r\n\x1a\n"  # the document describes the body; the call needs bytes
        try:
            call(service, operation, params, response)
        except ParamValidationError as e:
            problems.append(f"{DOCS / name}: refused by botocore {botocore.__version__}'s {service} model: "
                            + " ".join(str(e).split()))
            continue
        check_mammogan(name, doc, problems)
    extra = sorted(p.name for p in DOCS.glob("*.json") if p.name not in CALLS)
    if extra:
        problems.append(f"{DOCS}: {', '.join(extra)}: not checked (add them to CALLS in {Path(__file__).name})")
    if len(docs) == 4:
        model = docs["create-model.json"]["ModelName"]
        for v in docs["create-endpoint-config.json"]["ProductionVariants"]:
            if v["ModelName"] != model:
                problems.append(f"{DOCS / 'create-endpoint-config.json'}: variant {v['VariantName']} serves "
                                f"{v['ModelName']}, create-model.json makes {model}")
    for p in problems:
        print(f"FAIL (sagemaker requests): {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"sagemaker requests: {', '.join(CALLS)} valid for botocore {botocore.__version__} (offline; self-test refused 3 broken requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
