"""Kubernetes API objects cisfix keeps part of its work in (ConfigMaps), read and written through the API
server with the node's credentials (`cisfix.health.fetch`: client certificate, verified CA and server
name, one deadline per request). An answer is believed only when it is exactly the object asked for; a
write names the resourceVersion read — a conflict (HTTP 409) is read and updated again, then reported;
an object cisfix owns is created (POST) when missing. What a server says is shown escaped and cut
(`server_text`).
"""
from __future__ import annotations

import difflib
import http.client
import json
import ssl
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote

from .bounds import MAX_NESTING, nesting_depth
from .errors import InputError
from .health import CredentialRefused, fetch, server_text
from .state import NodeState
from .types import ApiObject

ATTEMPTS = 3  # reads and writes of one object before its conflicts are reported
TIMEOUT = 10.0  # for each request as a whole: connecting, sending and reading the answer
MAX_ANSWER = 4 << 20  # the API server refuses objects over 3 MiB
NODE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


@dataclass
class ObjectOutcome:
    name: str
    status: str  # updated, created, unchanged, would-update, would-create, elsewhere, conflict, failed
    changes: List[str] = field(default_factory=list)
    conflicts: List[str] = field(default_factory=list)
    reason: str = ""
    diff: str = ""
    resource_version: Optional[str] = None
    file: Optional[str] = None  # the YAML written for a person to apply elsewhere

    def as_dict(self) -> dict:
        return dict(vars(self))


# ---- API objects ----

def _diff(name: str, old: Dict[str, str], new: Dict[str, str]) -> str:
    """A unified diff of the data, each line escaped: what is there came from the server."""
    out = []
    for key in sorted(set(old) | set(new)):
        out += difflib.unified_diff(old.get(key, "").splitlines(), new.get(key, "").splitlines(),
                                    f"a/{name} {key}", f"b/{name} {key}", lineterm="")
    return "".join(server_text(line, None) + "\n" for line in out)


class RefusedAnswer(ValueError):
    """The API server answered something other than the ConfigMap asked for; nothing of it is used."""


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:  # json nests on the interpreter's stack
        raise RefusedAnswer("JSON nested deeper than any object the API server holds") from None
    except ValueError:
        raise RefusedAnswer(f"not JSON: {server_text(data, 60)!s}") from None


def configmap(name: str, data: bytes) -> dict:
    """The answer decoded as the ConfigMap `name` ("namespace/name") exactly, or RefusedAnswer saying
    what it is instead: a write is only ever made of a ConfigMap that was read whole."""
    answer = _json(data)
    if not isinstance(answer, dict):
        raise RefusedAnswer(f"{_JSON_TYPES.get(type(answer), 'a value')}, not a ConfigMap")
    if (answer.get("apiVersion"), answer.get("kind")) != ("v1", "ConfigMap"):
        raise RefusedAnswer(f"apiVersion {server_text(repr(answer.get('apiVersion')), 40)} kind "
                            f"{server_text(repr(answer.get('kind')), 40)}, not a v1 ConfigMap")
    if nesting_depth(answer) > MAX_NESTING:  # a ConfigMap nests a dozen levels (its managedFields)
        raise RefusedAnswer(f"nested more than {MAX_NESTING} levels deep, deeper than a ConfigMap is")
    metadata = answer.get("metadata")
    version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    if not isinstance(version, str) or not version:
        raise RefusedAnswer("a ConfigMap without metadata.resourceVersion: it could not be written back safely")
    namespace, _, wanted = name.partition("/")
    if (metadata.get("namespace"), metadata.get("name")) != (namespace, wanted):
        raise RefusedAnswer(f"the ConfigMap {server_text(str(metadata.get('namespace')), 60)}/"
                            f"{server_text(str(metadata.get('name')), 60)}, not {name}")
    values = answer.get("data")
    if values is None:  # a ConfigMap without data omits the field
        answer["data"] = {}
    elif not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise RefusedAnswer("its data is not a map of strings to strings")
    return answer


def _message(data: bytes) -> str:
    """What a refusing server said (its Status message, else its text), escaped and cut."""
    try:
        status = _json(data)
    except RefusedAnswer:
        status = None
    message = status.get("message") if isinstance(status, dict) else None
    return server_text(message if isinstance(message, str) else data.strip())


def _call(obj: ApiObject, state: NodeState, method: str, body: Optional[dict] = None) -> Tuple[int, bytes]:
    code, data = fetch(obj.url, state, dict(obj.credentials or {}), TIMEOUT, limit=MAX_ANSWER + 1, method=method,
                       body=json.dumps(body).encode() if body is not None else None)
    if len(data) > MAX_ANSWER:
        raise RefusedAnswer(f"larger than {MAX_ANSWER >> 20} MiB, more than any object it may hold")
    return code, data


def _refused(obj: ApiObject, exc: RefusedAnswer, stage: str = "") -> ObjectOutcome:
    return ObjectOutcome(obj.name, "elsewhere", reason=f"the API server's answer{stage} is refused: {exc}")


def persist_object(obj: ApiObject, state: NodeState, force: bool, dry_run: bool) -> ObjectOutcome:
    if obj.credentials is None:
        return ObjectOutcome(obj.name, "elsewhere",
                             reason=obj.refused or "this node has no admin credentials for the API server")
    conflicts_seen = 0
    for _ in range(ATTEMPTS):
        try:
            code, answer = _call(obj, state, "GET")
            if code == 404 and obj.create:
                created = _create(obj, state, force, dry_run)
                if created is not None:
                    return created
                continue  # someone created it meanwhile (HTTP 409): read theirs and update it
            if code != 200:
                return ObjectOutcome(obj.name, "elsewhere", reason=f"the API server answered HTTP {code}: "
                                                                    f"{_message(answer)}".rstrip(": "))
            current = configmap(obj.name, answer)
        except RefusedAnswer as exc:
            return _refused(obj, exc)
        except CredentialRefused as exc:
            return ObjectOutcome(obj.name, "elsewhere", reason=f"the node's admin credentials are refused: {exc}")
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
            return ObjectOutcome(obj.name, "elsewhere",
                                 reason=f"the API server cannot be reached: {server_text(str(exc))}")
        data = dict(current["data"])
        try:
            update = obj.update(data, force)
        except InputError as exc:  # what the ConfigMap holds is not what the layout can read
            return _refused(obj, RefusedAnswer(server_text(str(exc))))
        version = current["metadata"]["resourceVersion"]
        outcome = ObjectOutcome(obj.name, "unchanged", list(update.changes), list(update.conflicts),
                                resource_version=version, diff=_diff(obj.name, data, dict(update.data)))
        if dict(update.data) == data:
            return outcome
        if dry_run:
            outcome.status = "would-update"
            return outcome
        try:
            code, answer = _call(obj, state, "PUT", {**current, "data": dict(update.data)})
            if code == 200:
                written = configmap(obj.name, answer)
                outcome.status, outcome.resource_version = "updated", written["metadata"]["resourceVersion"]
                return outcome
        except RefusedAnswer as exc:
            return _refused(obj, exc, " to the update")
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
            return ObjectOutcome(obj.name, "failed", reason=f"writing it failed: {server_text(str(exc))}")
        if code != 409:
            return ObjectOutcome(obj.name, "failed", reason=f"the API server refused the update: HTTP {code} "
                                                             f"{_message(answer)}".rstrip())
        conflicts_seen += 1
    return ObjectOutcome(obj.name, "conflict", reason=f"someone else changed it while cisfix wrote it "
                                                      f"({conflicts_seen} times, HTTP 409); run persist again")


def _create(obj: ApiObject, state: NodeState, force: bool, dry_run: bool) -> Optional[ObjectOutcome]:
    """POST the object cisfix owns, made from nothing (`update({}, force)`); None when another writer
    created it first (409), so that theirs is read and updated."""
    update = obj.update({}, force)
    outcome = ObjectOutcome(obj.name, "would-create" if dry_run else "created", list(update.changes),
                            list(update.conflicts), diff=_diff(obj.name, {}, dict(update.data)))
    if dry_run:
        return outcome
    namespace, _, name = obj.name.partition("/")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": dict(update.data)}
    try:
        code, answer = _call(replace(obj, url=obj.url.rsplit("/", 1)[0]), state, "POST", body)
        if code == 409:
            return None
        if code != 201:
            return ObjectOutcome(obj.name, "failed", reason=f"the API server refused to create it: HTTP {code} "
                                                             f"{_message(answer)}".rstrip())
        outcome.resource_version = configmap(obj.name, answer)["metadata"]["resourceVersion"]
    except RefusedAnswer as exc:
        return _refused(obj, exc, " to the creation")
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
        return ObjectOutcome(obj.name, "failed", reason=f"creating it failed: {server_text(str(exc))}")
    return outcome




def read_configmap(name: str, url: str, credentials: Mapping[str, Any], state: NodeState) -> Optional[dict]:
    """The ConfigMap `name` read whole, or None when the API server says there is none (HTTP 404).
    RefusedAnswer for any other answer; CredentialRefused, OSError... when it cannot be asked."""
    code, data = _call(ApiObject(name, url, credentials, lambda d, f: None, b""), state, "GET")  # type: ignore
    if code == 404:
        return None
    if code != 200:
        raise RefusedAnswer(f"HTTP {code}: {_message(data)}")
    return configmap(name, data)


def list_nodes(server: str, label: str, credentials: Mapping[str, Any], state: NodeState) -> List[str]:
    """The names of the cluster's Nodes that carry `label` (GET /api/v1/nodes?labelSelector=label),
    believed only when the answer is a v1 NodeList of Nodes named as Kubernetes names them."""
    url = f"{server}/api/v1/nodes?labelSelector={quote(label, safe='')}"
    code, data = _call(ApiObject("nodes", url, credentials, lambda d, f: None, b""), state, "GET")  # type: ignore
    if code != 200:
        raise RefusedAnswer(f"HTTP {code}: {_message(data)}")
    answer = _json(data)
    items = answer.get("items") if isinstance(answer, dict) else None
    if not isinstance(answer, dict) or (answer.get("apiVersion"), answer.get("kind")) != ("v1", "NodeList") \
            or not isinstance(items, list) or nesting_depth(answer) > MAX_NESTING:
        raise RefusedAnswer("not a v1 NodeList")
    names = []
    for item in items:
        metadata = item.get("metadata") if isinstance(item, dict) else None
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if not isinstance(name, str) or not name or len(name) > 253 or not set(name) <= NODE_NAME_CHARS:
            raise RefusedAnswer(f"a Node named {server_text(repr(name), 60)}, not a name Kubernetes gives a Node")
        names.append(name)
    return sorted(set(names))
