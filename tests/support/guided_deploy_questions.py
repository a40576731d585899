"""Print, as JSON, the questions `sam deploy --guided` asks about functions without authentication, worded and with
the defaults the pinned SAM CLI (requirements/infra.txt) gives them for template.yaml (run with .venv-infra's
Python). Its own prompt code runs, with every question answered yes and recorded; nothing reaches AWS.
"""

import json
import re
import sys
from types import SimpleNamespace

from samcli.commands.deploy import guided_context
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

asked = []


def answer_yes(text: str, default: bool = False, **_: object) -> bool:
    asked.append({"question": re.sub(r"\x1b\[\d+m", "", text).strip(), "default": default})
    return True


guided_context.confirm = answer_yes
stacks, _ = SamLocalStackProvider.get_stacks(sys.argv[1], global_parameter_overrides={"AWS::Region": "eu-west-1"})
guided_context.GuidedContext.prompt_authorization(SimpleNamespace(start_bold="", end_bold=""), stacks)
print(json.dumps(asked))
