"""Writes the secrets detector's test set: fake credentials of many providers in prose, logs,
code and config, and benign text that looks random (digests, UUIDs, ids, paths, base64 words).

    python scripts/secrets_testset.py > tests/guard/data/secrets_eval.jsonl

Every value is generated here from the provider's published format (prefix, alphabet, length),
never copied from a real key or from another tool's test data. Rows carry ``spans`` (``start``,
``end``, ``type``); benign rows have ``spans: []``. What counts as a secret is in
docs/guards.md ("Secrets detector").
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import sys
import uuid
from collections.abc import Callable

R = random.Random(14)
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"
UPPER_DIGITS = string.ascii_uppercase + string.digits


def pick(alphabet: str, n: int) -> str:
    return "".join(R.choice(alphabet) for _ in range(n))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt() -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {
        "sub": str(R.randint(1000, 99999)),
        "name": pick(string.ascii_lowercase, 6),
        "iat": R.randint(1.6e9, 1.8e9),
    }
    return f"{header}.{b64url(json.dumps(claims).encode())}.{b64url(R.randbytes(32))}"


def pem(kind: str) -> str:
    body = base64.b64encode(R.randbytes(R.choice([270, 600, 1190]))).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----"


SECRETS: dict[str, Callable[[], str]] = {
    "AWS_ACCESS_KEY": lambda: "AKIA" + pick(string.ascii_uppercase + "234567", 16),
    "AWS_SECRET_KEY": lambda: pick(ALNUM + "+/", 40),
    "GITHUB_TOKEN": lambda: R.choice(["ghp_", "gho_", "ghs_"]) + pick(ALNUM, 36),
    "GITHUB_PAT": lambda: "github_pat_" + pick(ALNUM, 22) + "_" + pick(ALNUM, 59),
    "GITLAB_TOKEN": lambda: "glpat-" + pick(URLSAFE, 20),
    "SLACK_TOKEN": lambda: (
        f"xoxb-{R.randint(10**10, 10**11)}-{R.randint(10**10, 10**11)}-{pick(ALNUM, 24)}"
    ),
    "SLACK_WEBHOOK": lambda: (
        "https://hooks.slack.com/services/"
        f"T{pick(UPPER_DIGITS, 8)}/B{pick(UPPER_DIGITS, 8)}/{pick(ALNUM, 24)}"
    ),
    "STRIPE_KEY": lambda: R.choice(["sk_live_", "rk_live_", "sk_test_"]) + pick(ALNUM, 24),
    "OPENAI_API_KEY": lambda: "sk-proj-" + pick(URLSAFE, 48) + "T3BlbkFJ" + pick(URLSAFE, 48),
    "ANTHROPIC_API_KEY": lambda: "sk-ant-api03-" + pick(URLSAFE, 93) + "AA",
    "GOOGLE_API_KEY": lambda: "AIza" + pick(URLSAFE, 35),
    "HUGGINGFACE_TOKEN": lambda: "hf_" + pick(ALNUM, 34),
    "SENDGRID_API_KEY": lambda: "SG." + pick(URLSAFE, 22) + "." + pick(URLSAFE, 43),
    "TWILIO_KEY": lambda: "SK" + pick(HEX, 32),
    "NPM_TOKEN": lambda: "npm_" + pick(ALNUM, 36),
    "PYPI_TOKEN": lambda: "pypi-AgEIcHlwaS5vcmc" + pick(URLSAFE, 70),
    "MAILCHIMP_KEY": lambda: pick(HEX, 32) + "-us" + str(R.randint(1, 20)),
    "TELEGRAM_BOT_TOKEN": lambda: f"{R.randint(10**8, 10**10)}:AA{pick(URLSAFE, 33)}",
    "DISCORD_BOT_TOKEN": lambda: (
        "M" + pick(ALNUM, 23) + "." + pick(URLSAFE, 6) + "." + pick(URLSAFE, 27)
    ),
    "DIGITALOCEAN_TOKEN": lambda: "dop_v1_" + pick(HEX, 64),
    "JWT": jwt,
    "PRIVATE_KEY": lambda: pem(
        R.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"])
    ),
    "GENERIC_TOKEN": lambda: pick(ALNUM, R.choice([32, 40, 48])),
}
PASSWORDS = lambda: pick(ALNUM + "!#%^*", R.randint(10, 20))  # noqa: E731

PROSE = [
    "Here is the key you asked for: {v}",
    "I found {v} in the build log, is that the production credential?",
    "Use {v} to authenticate against the API.",
    "The deploy failed because the token {v} expired yesterday.",
    "Sure! Set it like this and restart: {v}",
]
CODE = {
    "AWS_SECRET_KEY": "aws_secret_access_key = {v}",
    "GENERIC_TOKEN": "api_key: {v}",
}
ASSIGN = [
    "export {name}={v}",
    '{{"{lname}": "{v}", "region": "eu-west-1"}}',
    "{name}: {v}",
    "curl -H 'Authorization: Bearer {v}' https://api.example.com/v1/items",
    "2026-12-06T10:15:02Z INFO loaded credentials {v} for tenant acme",
]
CONNECTIONS = [
    "postgresql://app:{p}@db.internal:5432/orders",
    "mongodb+srv://reporting:{p}@cluster0.example.net/analytics?retryWrites=true",
    "redis://default:{p}@cache.example.com:6379/0",
    "Server=tcp:sql.example.com,1433;Database=crm;User ID=svc;Password={p};Encrypt=True;",
    "amqp://worker:{p}@mq.example.com:5672/",
]
BENIGN = [
    lambda: f"The release commit is {pick(HEX, 40)} and it passed CI.",
    lambda: f"sha256: {hashlib.sha256(R.randbytes(8)).hexdigest()}  shipyard-0.1.0.tar.gz",
    lambda: f"The file's MD5 checksum is {hashlib.md5(R.randbytes(8)).hexdigest()}.",
    lambda: f"Run {uuid.UUID(int=R.getrandbits(128))} finished in 2.3 s.",
    lambda: (
        f"request_id={uuid.UUID(int=R.getrandbits(128))} status=200 path=/v1/agents/support/invoke"
    ),
    lambda: (
        "See https://docs.example.com/guides/getting-started/installation-on-linux for details."
    ),
    lambda: (
        "The module lives at /usr/lib/python3.11/site-packages/shipyard/guard/secrets_scan.py now."
    ),
    lambda: "Call PhoneNumberMatcher with Leniency.POSSIBLE and a default region of IT.",
    lambda: (
        "Please reset your password using the link in the email; passwords must have 12 characters."
    ),
    lambda: f"The image digest is sha256:{hashlib.sha256(R.randbytes(8)).hexdigest()}.",
    lambda: "Version 2026.10.11549 of xllamacpp ships the SmolLM2-135M-Instruct model.",
    lambda: f"Order ORD-{R.randint(10**7, 10**8)} ships on 2026-12-08 to the Berlin warehouse.",
    lambda: "The environment variable SHIPYARD_TOOL_SECRETS_FILE names the rules file.",
    lambda: "Use the secret reference vault://kv/data/github#token instead of the raw value.",
    lambda: "Our api_key setting is read from the environment, never from this file.",
    lambda: f"git checkout {pick(HEX, 12)} && make test",
    lambda: "Base64 of 'hello world' is aGVsbG8gd29ybGQ= as everyone knows.",
]


def row(text: str, spans: list[tuple[str, str]]) -> dict[str, object]:
    out, cursor = [], 0
    for kind, value in spans:
        start = text.index(value, cursor)
        out.append({"start": start, "end": start + len(value), "type": kind})
        cursor = start + len(value)
    return {"text": text, "spans": out}


def main() -> None:
    rows = []
    for kind, make in SECRETS.items():
        for i in range(12):
            value = make()
            if kind in CODE and i % 2:
                text = CODE[kind].format(v=value)
            elif i % 3 == 0:
                text = R.choice(PROSE).format(v=value)
            else:
                name = kind if kind != "GENERIC_TOKEN" else "SERVICE_TOKEN"
                text = R.choice(ASSIGN).format(name=name, lname=name.lower(), v=value)
            rows.append(row(text, [(kind, value)]))
    for _ in range(30):
        password = PASSWORDS()
        rows.append(
            row(f"Connection: {R.choice(CONNECTIONS).format(p=password)}", [("PASSWORD", password)])
        )
    for _ in range(120):
        rows.append(row(R.choice(BENIGN)(), []))
    R.shuffle(rows)
    for r in rows:
        sys.stdout.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
