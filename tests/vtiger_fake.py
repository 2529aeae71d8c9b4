"""A local vtiger that speaks the REST webservice (``webservice.php``) as vtiger documents it.

Written from vtiger's webservice documentation, for the protocol we cannot reach in a test:

- ``GET ?operation=getchallenge&username=U`` answers ``{token, serverTime, expireTime}``;
- ``POST operation=login`` with ``accessKey = md5(token + user's access key)`` answers
  ``{sessionName, userId, version, vtigerVersion}``; a wrong key is
  ``INVALID_USER_CREDENTIALS``;
- ``GET ?operation=query&sessionName=S&query=VTQL`` runs ``SELECT ... FROM M [WHERE ...]
  [ORDER BY f] [LIMIT [offset,] n];`` and answers at most 100 rows, every value a string;
- ``GET ?operation=describe&elementType=M`` answers the module's fields and ``idPrefix``;
- a session that has ended answers ``INVALID_SESSIONID``.

Every answer is ``{"success": true, "result": ...}`` or ``{"success": false, "error":
{"code", "message"}}``. Record ids read ``<idPrefix>x<number>``; the prefixes here differ
from a stock install's on purpose. Tests add and edit records, end sessions, and can hold
a request (to kill the connector while it waits for that answer).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

PREFIXES = {
    "Leads": "10",
    "Accounts": "11",
    "Contacts": "12",
    "Potentials": "13",
    "Events": "18",
    "Users": "19",
}
FIELDS = {
    "Leads": [
        "firstname",
        "lastname",
        "company",
        "leadsource",
        "city",
        "state",
        "country",
        "assigned_user_id",
    ],
    "Accounts": ["accountname", "bill_city", "bill_state", "bill_country", "assigned_user_id"],
    "Contacts": ["firstname", "lastname", "account_id", "assigned_user_id"],
    "Potentials": [
        "potentialname",
        "amount",
        "related_to",
        "contact_id",
        "sales_stage",
        "opportunity_type",
        "leadsource",
        "closingdate",
        "assigned_user_id",
    ],
    "Events": [
        "subject",
        "activitytype",
        "date_start",
        "time_start",
        "eventstatus",
        "parent_id",
        "contact_id",
        "assigned_user_id",
    ],
}
MAX_ROWS = 100
QUERY = re.compile(
    r"^select\s+(?P<columns>\*|[\w\s,]+?)\s+from\s+(?P<module>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+order\s+by\s+(?P<order>\w+))?"
    r"(?:\s+limit\s+(?:(?P<offset>\d+)\s*,\s*)?(?P<limit>\d+))?\s*;$",
    re.IGNORECASE | re.DOTALL,
)
COMPARE = re.compile(r"^(?P<field>\w+)\s*(?P<op>>=|<=|=|>|<)\s*'(?P<value>[^']*)'$")
IN_LIST = re.compile(
    r"^(?P<field>\w+)\s+in\s*\((?P<values>\s*'[^']*'(?:\s*,\s*'[^']*')*\s*)\)$", re.IGNORECASE
)


class WebserviceError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeVtiger:
    """The CRM: its records, one user, its sessions, and what it was asked."""

    def __init__(self, user: str = "admin", access_key: str = "Xk9sTq2LmP4wZr7d") -> None:
        self.user = user
        self.access_key = access_key
        self.records: dict[str, dict[str, dict[str, str]]] = {m: {} for m in PREFIXES if m != "Users"}
        self._next = 1
        self._tokens: set[str] = set()
        self._sessions: dict[str, int] = {}
        #: A session ends after this many queries (None: never), as an idle or expired one would.
        self.session_queries: int | None = None
        self.logins = 0
        self.queries: list[str] = []
        self.lock = threading.RLock()
        self._hold: Callable[[str], bool] | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        #: The CRM's base URL, once started.
        self.url = ""

    # -- data ---------------------------------------------------------------------------------
    def add(self, module: str, created: str, modified: str | None = None, **fields: str) -> str:
        with self.lock:
            record_id = f"{PREFIXES[module]}x{self._next}"
            self._next += 1
            row = dict.fromkeys(FIELDS[module], "")
            row.update(fields)
            row.update(id=record_id, createdtime=created, modifiedtime=modified or created)
            self.records[module][record_id] = row
            return record_id

    def edit(self, record_id: str, modified: str, **fields: str) -> None:
        with self.lock:
            row = next(rows[record_id] for rows in self.records.values() if record_id in rows)
            row.update(fields)
            row["modifiedtime"] = modified

    def rows(self, module: str) -> list[dict[str, str]]:
        with self.lock:
            return [dict(r) for r in self.records[module].values()]

    def end_sessions(self) -> None:
        with self.lock:
            self._sessions.clear()

    def hold_when(self, predicate: Callable[[str], bool]) -> None:
        """Hold the first query matching ``predicate`` until :attr:`release` is set."""
        self.held.clear()
        self.release.clear()
        self._hold = predicate

    # -- protocol -----------------------------------------------------------------------------
    def handle(self, method: str, params: dict[str, str]) -> Any:
        operation = params.get("operation", "")
        if operation == "getchallenge" and method == "GET":
            if params.get("username") != self.user:
                raise WebserviceError("INVALID_USER_CREDENTIALS", "Invalid username or password")
            token = secrets.token_hex(8)
            with self.lock:
                self._tokens.add(token)
            now = int(time.time())
            return {"token": token, "serverTime": now, "expireTime": now + 300}
        if operation == "login" and method == "POST":
            return self._login(params)
        if operation in {"query", "describe"} and method == "GET":
            self._check_session(params.get("sessionName", ""))
            if operation == "describe":
                return self._describe(params.get("elementType", ""))
            return self._query(params.get("query", ""))
        raise WebserviceError("UNKNOWN_OPERATION", f"Unknown operation requested: {operation}")

    def _login(self, params: dict[str, str]) -> dict[str, str]:
        with self.lock:
            if params.get("username") != self.user:
                raise WebserviceError("INVALID_USER_CREDENTIALS", "Invalid username or password")
            valid = [
                t
                for t in self._tokens
                if hashlib.md5((t + self.access_key).encode()).hexdigest() == params.get("accessKey")
            ]
            if not valid:
                raise WebserviceError("INVALID_USER_CREDENTIALS", "Invalid username or password")
            self._tokens.discard(valid[0])
            session = secrets.token_hex(12)
            self._sessions[session] = 0
            self.logins += 1
        return {"sessionName": session, "userId": "19x1", "version": "0.22", "vtigerVersion": "7.5.0"}

    def _check_session(self, session: str) -> None:
        with self.lock:
            if session not in self._sessions:
                raise WebserviceError("INVALID_SESSIONID", "Session Identifier provided is Invalid")
            self._sessions[session] += 1
            if self.session_queries is not None and self._sessions[session] > self.session_queries:
                del self._sessions[session]
                raise WebserviceError("INVALID_SESSIONID", "Session Identifier provided is Invalid")

    def _describe(self, module: str) -> dict[str, Any]:
        if module not in self.records:
            raise WebserviceError(
                "ACCESS_DENIED", f"Permission to perform the operation is denied for {module}"
            )
        names = ["id", "createdtime", "modifiedtime", *FIELDS[module]]
        fields = [
            {
                "name": name,
                "label": name.replace("_", " ").title(),
                "mandatory": name in {"lastname", "assigned_user_id"},
                "type": {"name": "datetime" if name.endswith("time") else "string"},
                "nullable": True,
                "editable": name != "id",
            }
            for name in names
        ]
        return {
            "label": module,
            "name": module,
            "createable": True,
            "updateable": True,
            "deleteable": True,
            "retrieveable": True,
            "fields": fields,
            "idPrefix": PREFIXES[module],
            "isEntity": True,
            "labelFields": "",
        }

    def _query(self, vtql: str) -> list[dict[str, str]]:
        self.queries.append(vtql)
        hold = self._hold
        if hold is not None and hold(vtql):
            self._hold = None
            self.held.set()
            self.release.wait(60)
        match = QUERY.match(vtql.strip())
        if match is None:
            raise WebserviceError("QUERY_SYNTAX_ERROR", f"Syntax Error on line 1: {vtql[:60]}")
        module = match["module"]
        if module not in self.records:
            raise WebserviceError(
                "ACCESS_DENIED", f"Permission to perform the operation is denied for {module}"
            )
        with self.lock:
            rows = [dict(r) for r in self.records[module].values()]  # insertion order: ties stay stable
        if match["where"]:
            rows = [r for r in rows if self._where(match["where"].strip())(r)]
        if match["order"]:
            rows.sort(key=lambda r: r.get(match["order"], ""))
        offset = int(match["offset"] or 0)
        limit = min(int(match["limit"] or MAX_ROWS), MAX_ROWS)
        rows = rows[offset : offset + limit]
        if match["columns"].strip() != "*":
            wanted = [c.strip() for c in match["columns"].split(",")]
            rows = [{c: r.get(c, "") for c in wanted} for r in rows]
        return rows

    @staticmethod
    def _where(condition: str) -> Callable[[dict[str, str]], bool]:
        if (m := COMPARE.match(condition)) is not None:
            name, op, value = m["field"], m["op"], m["value"]
            ops: dict[str, Callable[[str, str], bool]] = {
                ">=": lambda a, b: a >= b,
                "<=": lambda a, b: a <= b,
                "=": lambda a, b: a == b,
                ">": lambda a, b: a > b,
                "<": lambda a, b: a < b,
            }
            return lambda r: ops[op](r.get(name, ""), value)
        if (m := IN_LIST.match(condition)) is not None:
            name = m["field"]
            values = set(re.findall(r"'([^']*)'", m["values"]))
            return lambda r: r.get(name, "") in values
        raise WebserviceError("QUERY_SYNTAX_ERROR", f"Syntax Error: unsupported condition {condition[:60]}")

    # -- server -------------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/webservice.php":
                    self.send_error(404)
                    return
                params = dict(urllib.parse.parse_qsl(url.query))
                if method == "POST":
                    length = int(self.headers.get("Content-Length", "0"))
                    params.update(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                try:
                    body = {"success": True, "result": fake.handle(method, params)}
                except WebserviceError as exc:
                    body = {"success": False, "error": {"code": exc.code, "message": exc.message}}
                data = orjson.dumps(body)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the connector was killed while this answer was held
                    pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
