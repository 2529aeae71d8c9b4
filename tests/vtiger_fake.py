"""A local vtiger that speaks the REST webservice (``webservice.php``) as vtiger 8.2.0 does.

Written from vtiger's webservice documentation, and kept true to what a real vtiger 8.2.0
(PHP 8.2, MariaDB) answered, for the protocol we cannot reach in a test:

- ``GET ?operation=getchallenge&username=U`` answers ``{token, serverTime, expireTime}``;
- ``POST operation=login`` with ``accessKey = md5(token + user's access key)`` answers
  ``{sessionName, userId, version, vtigerVersion}``; a wrong key is
  ``INVALID_USER_CREDENTIALS``;
- ``GET ?operation=query&sessionName=S&query=VTQL`` runs ``SELECT ... FROM M [WHERE ...]
  [ORDER BY f[, g]] [LIMIT [offset,] n];`` and answers at most 100 rows;
- ``GET ?operation=describe&elementType=M`` answers the module's fields and ``idPrefix``;
- ``POST operation=create`` with ``elementType`` and ``element`` (JSON) stores a record and
  answers it; a mandatory field left empty is ``MANDATORY_FIELDS_MISSING``;
- ``POST operation=logout`` fails with HTTP 500 (vtiger 8.2.0 under PHP 8);
- a session that has ended answers ``INVALID_SESSIONID``, a module the user may not read
  ``ACCESS_DENIED``.

What real data looks like: every value is a string, amounts carry 8 decimals
(``"12500.50000000"``), an empty reference is ``""`` (never null or absent);
``Potentials.related_to`` points at Accounts only and ``contact_id`` at Contacts beside it;
``Events`` have ``parent_id`` and ``contact_id``; a contact may have ``account_id`` ``""``; a
``sales_stage`` outside the picklist (``Bogus Stage``) is stored as given; closing a deal
leaves ``probability`` as it was; ``modifiedtime`` is one second after ``createdtime`` on
a record nobody edited. Errors come as HTTP 200 with ``{"success": false, "error": {"code",
"message"}}``. Record ids read ``<idPrefix>x<number>``; the prefixes here differ from a stock
install's on purpose. Tests add and edit records, end sessions, deny modules, and can hold
a request (to kill the connector while it waits for that answer), and can give a module a
field stock 8.2.0 does not have (``forecast_category``, as other editions have it).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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
        "probability",
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
        "due_date",
        "time_end",
        "eventstatus",
        "parent_id",
        "contact_id",
        "assigned_user_id",
    ],
}
#: What vtiger 8.2.0's create refuses to go without (MANDATORY_FIELDS_MISSING).
MANDATORY = {
    "Leads": ("lastname", "assigned_user_id"),
    "Accounts": ("accountname", "assigned_user_id"),
    "Contacts": ("lastname", "assigned_user_id"),
    "Potentials": ("potentialname", "closingdate", "sales_stage", "assigned_user_id"),
    "Events": (
        "subject",
        "activitytype",
        "date_start",
        "time_start",
        "due_date",
        "time_end",
        "eventstatus",
        "assigned_user_id",
    ),
}
REFERENCES = {
    "related_to": ("Accounts",),
    "contact_id": ("Contacts",),
    "account_id": ("Accounts",),
    "parent_id": ("Accounts", "Leads", "Potentials"),
    "assigned_user_id": ("Users",),
}
MAX_ROWS = 100
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
QUERY = re.compile(
    r"^select\s+(?P<columns>\*|[\w\s,]+?)\s+from\s+(?P<module>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+order\s+by\s+(?P<order>\w+(?:\s*,\s*\w+)*))?"
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
        self.fields = {module: list(names) for module, names in FIELDS.items()}
        self._next = 1
        self._tokens: set[str] = set()
        self._sessions: dict[str, int] = {}
        #: A session ends after this many queries (None: never), as an idle or expired one would.
        self.session_queries: int | None = None
        #: Modules the user may not read: describe and query answer ACCESS_DENIED.
        self.denied: set[str] = set()
        self.logins = 0
        self.logouts = 0
        self.queries: list[str] = []
        self.lock = threading.RLock()
        self._hold: Callable[[str], bool] | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        #: The CRM's base URL, once started.
        self.url = ""

    # -- data ---------------------------------------------------------------------------------
    def add(self, module: str, created: str, modified: str | None = None, **fields: object) -> str:
        """A record entered at ``created`` as a user would through vtiger's form: mandatory
        fields the test leaves out get the form's defaults; ``modifiedtime`` is one second
        later unless given (vtiger 8.2.0 writes it so on a record nobody edited)."""
        start = fields.get("date_start") or created[:10]
        defaults = {
            "lastname": f"Person {self._next}",
            "accountname": f"Org {self._next}",
            "potentialname": f"Deal {self._next}",
            "subject": f"Activity {self._next}",
            "closingdate": created[:10],
            "sales_stage": "Prospecting",
            "activitytype": "Call",
            "date_start": start,
            "time_start": created[11:],
            "due_date": start,
            "time_end": fields.get("time_start") or created[11:],
            "eventstatus": "Planned",
            "assigned_user_id": "19x1",
        }
        element = {k: v for k, v in defaults.items() if k in MANDATORY[module]} | fields
        return str(self._create(module, element, created, modified)["id"])

    def _create(
        self, module: str, element: dict[str, object], created: str, modified: str | None = None
    ) -> dict[str, str]:
        missing = [f for f in MANDATORY[module] if not str(element.get(f) or "").strip()]
        if missing:
            raise WebserviceError("MANDATORY_FIELDS_MISSING", f"{missing[0]} does not have a value")
        with self.lock:
            record_id = f"{PREFIXES[module]}x{self._next}"
            self._next += 1
            row = dict.fromkeys(self.fields[module], "")
            row.update({k: self._stored(k, v) for k, v in element.items()})
            later = datetime.strptime(created, TIME_FORMAT) + timedelta(seconds=1)
            row.update(
                id=record_id, createdtime=created, modifiedtime=modified or later.strftime(TIME_FORMAT)
            )
            self.records[module][record_id] = row
            return dict(row)

    @staticmethod
    def _stored(field: str, value: object) -> str:
        """A value as vtiger stores and answers it: a string; an amount with 8 decimals."""
        if value is None:
            return ""
        if field == "amount" and str(value).strip():
            return f"{float(str(value)):.8f}"
        return str(value)

    def edit(self, record_id: str, modified: str, **fields: object) -> None:
        """An edit saved at ``modified``; fields not given keep their values (``probability``
        too when a deal is closed)."""
        with self.lock:
            row = next(rows[record_id] for rows in self.records.values() if record_id in rows)
            row.update({k: self._stored(k, v) for k, v in fields.items()})
            row["modifiedtime"] = modified

    def add_field(self, module: str, name: str) -> None:
        """A field this install has beyond stock 8.2.0's: ``describe`` lists it, and every record
        answers it, ``""`` until it is set."""
        with self.lock:
            self.fields[module].append(name)
            for row in self.records[module].values():
                row.setdefault(name, "")

    def delete(self, record_id: str) -> None:
        """A record deleted in vtiger: queries no longer answer it."""
        with self.lock:
            for rows in self.records.values():
                rows.pop(record_id, None)

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
        if operation == "create" and method == "POST":
            self._check_session(params.get("sessionName", ""))
            module = params.get("elementType", "")
            self._readable(module)
            element = orjson.loads(params.get("element") or "{}")
            now = datetime.now(UTC).strftime(TIME_FORMAT)
            return self._create(module, element if isinstance(element, dict) else {}, now)
        raise WebserviceError("UNKNOWN_OPERATION", f"Unknown operation requested: {operation}")

    def _readable(self, module: str) -> None:
        if module not in self.records or module in self.denied:
            raise WebserviceError(
                "ACCESS_DENIED", f"Permission to perform the operation is denied for {module}"
            )

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
        return {"sessionName": session, "userId": "19x1", "version": "0.22", "vtigerVersion": "8.2.0"}

    def _check_session(self, session: str) -> None:
        with self.lock:
            if session not in self._sessions:
                raise WebserviceError("INVALID_SESSIONID", "Session Identifier provided is Invalid")
            self._sessions[session] += 1
            if self.session_queries is not None and self._sessions[session] > self.session_queries:
                del self._sessions[session]
                raise WebserviceError("INVALID_SESSIONID", "Session Identifier provided is Invalid")

    def _describe(self, module: str) -> dict[str, Any]:
        self._readable(module)
        names = ["id", "createdtime", "modifiedtime", *self.fields[module]]
        fields = [
            {
                "name": name,
                "label": name.replace("_", " ").title(),
                "mandatory": name in MANDATORY[module],
                "type": {"name": "reference", "refersTo": list(REFERENCES[name])}
                if name in REFERENCES
                else {"name": "datetime" if name.endswith("time") else "string"},
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
        self._readable(module)
        with self.lock:
            rows = [dict(r) for r in self.records[module].values()]
        if match["where"]:
            rows = [r for r in rows if self._where(match["where"].strip())(r)]
        if match["order"]:
            columns = [c.strip() for c in match["order"].split(",")]
            rows.sort(key=lambda r: tuple(self._sort_key(c, r) for c in columns))
        offset = int(match["offset"] or 0)
        limit = min(int(match["limit"] or MAX_ROWS), MAX_ROWS)
        rows = rows[offset : offset + limit]
        if match["columns"].strip() != "*":
            wanted = [c.strip() for c in match["columns"].split(",")]
            rows = [{c: r.get(c, "") for c in wanted} for r in rows]
        return rows

    @staticmethod
    def _sort_key(column: str, row: dict[str, str]) -> tuple[int, str]:
        """vtiger sorts ids by their record number (the database's crmid), the rest as stored."""
        if column == "id":
            return int(row["id"].rpartition("x")[2]), ""
        return 0, row.get(column, "")

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
                if params.get("operation") == "logout":  # vtiger 8.2.0 under PHP 8: a fatal error
                    with fake.lock:
                        fake.logouts += 1
                        fake._sessions.pop(params.get("sessionName", ""), None)
                    self._send(500, b"<b>Fatal error</b>: Uncaught TypeError", "text/html")
                    return
                try:
                    body = {"success": True, "result": fake.handle(method, params)}
                except WebserviceError as exc:
                    body = {"success": False, "error": {"code": exc.code, "message": exc.message}}
                self._send(200, orjson.dumps(body), "application/json")

            def _send(self, status: int, data: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
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
