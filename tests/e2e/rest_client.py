"""A small interpreter for the VS Code REST Client files we ship (`api.http`).

Enough of the syntax to run our file as its users do: file variables
(`@name = value`), requests separated by `###`, `# @name` captures,
`{{var}}` and `{{req.response.body.<path>}}` references (dotted keys or a
`$[0].key` JSONPath), the `{{$guid}}` system variable, plus our own
`# expect: 200 409` comments.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

_REF = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


@dataclass
class HttpRequest:
    title: str
    method: str
    url: str
    headers: dict[str, str]
    body: str
    name: str | None = None
    expect: list[int] = field(default_factory=list)


def parse(text: str) -> tuple[dict[str, str], list[HttpRequest]]:
    variables: dict[str, str] = {}
    blocks = re.split(r"^###", text, flags=re.MULTILINE)
    for line in blocks[0].splitlines():
        m = re.match(r"^@(\w+)\s*=\s*(.*)$", line.strip())
        if m:
            variables[m.group(1)] = m.group(2).strip()
    requests: list[HttpRequest] = []
    for block in blocks[1:]:
        lines = block.split("\n")
        title, name, expect = lines[0].strip(), None, []
        i = 1
        while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
            c = lines[i].strip()
            if c.startswith("# @name"):
                name = c.split()[-1]
            elif c.startswith("# expect:"):
                expect = [int(x) for x in c.split(":", 1)[1].split()]
            i += 1
        if i >= len(lines):
            continue
        method, url = lines[i].split(None, 1)
        i += 1
        headers: dict[str, str] = {}
        while i < len(lines) and lines[i].strip():
            k, v = lines[i].split(":", 1)
            headers[k.strip()] = v.strip()
            i += 1
        body = "\n".join(lines[i:]).strip()
        requests.append(HttpRequest(title, method, url.strip(), headers, body, name, expect))
    return variables, requests


def _walk(data: Any, path: str) -> Any:
    path = path.lstrip(".").removeprefix("$").lstrip(".")
    for part in re.findall(r"\[(\d+)\]|([^.\[\]]+)", path):
        index, key = part
        data = data[int(index)] if index else data[key]
    return data


class Runner:
    def __init__(self, variables: dict[str, str], client: httpx.Client) -> None:
        self.variables = variables
        self.responses: dict[str, httpx.Response] = {}
        self.client = client

    def resolve(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            ref = m.group(1)
            if ref == "$guid":  # a new one per use, as REST Client does
                return str(uuid.uuid4())
            if ref in self.variables:
                return self.resolve(self.variables[ref])
            req, _, rest = ref.partition(".response.body")
            value = _walk(self.responses[req].json(), rest)
            return str(value)

        return _REF.sub(one, text)

    def send(self, req: HttpRequest) -> httpx.Response:
        url = self.resolve(req.url)
        headers = {k: self.resolve(v) for k, v in req.headers.items()}
        body = self.resolve(req.body) if req.body else None
        if body and headers.get("Content-Type", "").startswith("application/json"):
            json.loads(body)  # the file's JSON must be valid as written
        resp = self.client.request(req.method, url, headers=headers, content=body)
        if req.name:
            self.responses[req.name] = resp
        return resp
