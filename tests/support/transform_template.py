"""Print template.yaml as aws-sam-translator transforms it into CloudFormation (run with .venv-infra's Python).

`sam build` fills each image function's ImageUri with the image it built; here a placeholder stands in for it.
The translator only asks AWS for managed policies when a function lists some; this template writes every policy
out, so the loader below is never consulted, and the transform needs no network and no credentials.
"""

import json
import sys
from pathlib import Path

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

BUILT_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/cat-breed-classifier:python3.12"


class NoManagedPolicies:
    def load(self) -> dict:
        return {}


template = yaml_parse(Path(sys.argv[1]).read_text(encoding="utf-8"))
for resource in template["Resources"].values():
    if resource["Type"] == "AWS::Serverless::Function" and resource["Properties"].get("PackageType") == "Image":
        resource["Properties"].setdefault("ImageUri", BUILT_IMAGE)
print(json.dumps(transform(template, {}, NoManagedPolicies()), default=str))
