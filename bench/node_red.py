"""Node-RED as a peer consumer for `bench.peer_drain`: installed from the npm registry into a cache
folder on first use, run headless with a flow written here.

The flow is what a Node-RED user would build for the same job: `mqtt in` (QoS 1, fixed client id,
persistent session) -> `json` -> a `function` keeping each device's alarm state with hysteresis and
sending only on a change -> `mqtt out` on an alarm topic. A second `function` counts messages and,
on the last one, hands a line with the first and last receipt times to a `file` node: that file is
how the benchmark learns the drain has ended.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from rich.console import Console

VERSION = "4.1"
CACHE = Path.home() / ".cache" / "firewatch-bench" / "node-red"
ALARM_TOPIC = "fw/v1/bench/alarms"

# Kept small and plain on purpose: this is the logic a Node-RED user writes, not an optimised one.
THRESHOLD_JS = """
const dev = msg.topic.split('/')[3];
const v = msg.payload && msg.payload.v ? msg.payload.v.smoke : undefined;
if (typeof v !== 'number') { return null; }
let state = context.get('state');
if (!state) { state = {}; context.set('state', state); }
const on = state[dev] === true;
if (!on && v >= AT) {
    state[dev] = true;
    msg.payload = JSON.stringify({device: dev, state: 'raised', value: v, ts: msg.payload.ts});
    return msg;
}
if (on && v < CLEAR) {
    state[dev] = false;
    msg.payload = JSON.stringify({device: dev, state: 'cleared', value: v, ts: msg.payload.ts});
    return msg;
}
return null;
"""

COUNTER_JS = """
let n = context.get('n') || 0;
if (n === 0) { context.set('first', Date.now()); }
n += 1;
context.set('n', n);
if (n === TOTAL) {
    msg.payload = JSON.stringify({count: n, first: context.get('first') / 1000, last: Date.now() / 1000});
    return msg;
}
return null;
"""


# Node ids in Node-RED's own style (16 hex digits): short words such as "json" can be taken for
# references to config nodes when another node has a property of that value.
IDS = {
    name: f"{0xF1CE0000 + i:016x}"
    for i, name in enumerate(("tab", "broker", "in", "json", "thr", "out", "count", "done"))
}


def red_js(cache: Path = CACHE) -> Path:
    return cache / "node_modules" / "node-red" / "red.js"


def installed_version(cache: Path = CACHE) -> str | None:
    package = cache / "node_modules" / "node-red" / "package.json"
    if not package.exists():
        return None
    version: str = json.loads(package.read_text(encoding="utf-8"))["version"]
    return version


def ensure_installed(console: Console, cache: Path = CACHE) -> str:
    """Install node-red@4.1 into `cache` unless it is there already; its version."""
    version = installed_version(cache)
    if version is not None and version.startswith(VERSION + "."):
        return version
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("Node-RED needs node and npm (apt-get install -y nodejs npm)")
    cache.mkdir(parents=True, exist_ok=True)
    with console.status(f"installing node-red@{VERSION} into {cache} (npm, once)"):
        subprocess.run(
            [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", f"node-red@{VERSION}"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    version = installed_version(cache)
    if version is None:
        raise RuntimeError(f"npm finished but {red_js(cache)} is missing")
    return version


def settings_js(port: int) -> str:
    """Headless: no editor, no admin API, no HTTP endpoints, nothing that calls out."""
    return f"""module.exports = {{
    uiHost: "127.0.0.1",
    uiPort: {port},
    httpAdminRoot: false,
    httpNodeRoot: false,
    flowFile: "flows.json",
    credentialSecret: false,
    diagnostics: {{ enabled: false }},
    telemetry: {{ enabled: false, updateNotification: false }},
    logging: {{ console: {{ level: "warn", metrics: false, audit: false }} }},
}};
"""


def flow(
    *,
    host: str,
    port: int,
    client_id: str,
    topic: str,
    total: int,
    at: float,
    clear: float,
    done_file: Path,
) -> list[dict[str, object]]:
    broker: dict[str, object] = {
        "id": IDS["broker"],
        "type": "mqtt-broker",
        "name": "private mosquitto",
        "broker": host,
        "port": str(port),
        "clientid": client_id,
        "autoConnect": True,
        "usetls": False,
        "protocolVersion": "4",
        "keepalive": "60",
        "cleansession": False,  # a persistent session: the backlog queued while offline is delivered
        "autoUnsubscribe": False,
        "birthTopic": "",
        "closeTopic": "",
        "willTopic": "",
    }
    return [
        {"id": IDS["tab"], "type": "tab", "label": "drain"},
        broker,
        {
            "id": IDS["in"],
            "type": "mqtt in",
            "z": IDS["tab"],
            "name": "telemetry",
            "topic": topic,
            "qos": "1",
            "datatype": "utf8",
            "broker": IDS["broker"],
            "nl": False,
            "rap": True,
            "rh": 0,
            "inputs": 0,
            "wires": [[IDS["json"], IDS["count"]]],
        },
        {
            "id": IDS["json"],
            "type": "json",
            "z": IDS["tab"],
            "property": "payload",
            "action": "obj",
            "wires": [[IDS["thr"]]],
        },
        {
            "id": IDS["thr"],
            "type": "function",
            "z": IDS["tab"],
            "name": "threshold with hysteresis",
            "func": THRESHOLD_JS.replace("CLEAR", repr(clear)).replace("AT", repr(at)),
            "outputs": 1,
            "wires": [[IDS["out"]]],
        },
        {
            "id": IDS["out"],
            "type": "mqtt out",
            "z": IDS["tab"],
            "topic": ALARM_TOPIC,
            "qos": "1",
            "retain": "false",
            "broker": IDS["broker"],
            "wires": [],
        },
        {
            "id": IDS["count"],
            "type": "function",
            "z": IDS["tab"],
            "name": "count to the end",
            "func": COUNTER_JS.replace("TOTAL", str(total)),
            "outputs": 1,
            "wires": [[IDS["done"]]],
        },
        {
            "id": IDS["done"],
            "type": "file",
            "z": IDS["tab"],
            "filename": str(done_file),
            "filenameType": "str",
            "appendNewline": True,
            "createDir": False,
            "overwriteFile": "true",
            "encoding": "none",
            "wires": [[]],
        },
    ]


def write_user_dir(user_dir: Path, http_port: int, nodes: list[dict[str, object]]) -> Path:
    """Write settings.js and flows.json into `user_dir`; the settings file's path."""
    user_dir.mkdir(parents=True, exist_ok=True)
    (user_dir / "flows.json").write_text(json.dumps(nodes, indent=1), encoding="utf-8")
    settings = user_dir / "settings.js"
    settings.write_text(settings_js(http_port), encoding="utf-8")
    return settings


def command(user_dir: Path, settings: Path, cache: Path = CACHE) -> list[str]:
    node = shutil.which("node") or "node"
    return [node, str(red_js(cache)), "--userDir", str(user_dir), "--settings", str(settings), "flows.json"]
