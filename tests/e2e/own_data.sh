#!/usr/bin/env bash
# End to end, your own data: the README's example (`lmrec datasets add` on its CSVs, `lmrec
# evaluate`, `lmrec train`), then `lmrec serve` on the trained artifact, checked over HTTP:
# /recommend answers with the data's ids, and /ui (when the route exists) answers 200 with the
# data's users (and, where the page renders them, item titles).
#
#   tests/e2e/own_data.sh WORKDIR      (lmrec on PATH; writes only under WORKDIR)
#
# Prints "SKIP: ..." and exits 0 for a check that cannot run here (no /ui route yet).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:?usage: own_data.sh WORKDIR}"
mkdir -p "$work"
cd "$work"
export LMREC_USER_DATA_HOME="$work/user-data"
PY="${PYTHON:-python}"

# 1. the README block, as a user would paste it (the serve line is started below, in the background)
awk '/<!-- own-data-example/ {on=1; next} /<!-- \/own-data-example/ {on=0} on' "$repo/README.md" \
  | sed '/^```/d' | grep -v 'lmrec serve' > example.sh
grep -q '^lmrec datasets add mydata' example.sh || { echo "README example not found" >&2; exit 1; }
bash -euo pipefail example.sh
test -f "$LMREC_USER_DATA_HOME/mydata/lmrec-dataset.toml"
test -f runs/mydata/report.html
lmrec datasets info mydata --json > info.json
"$PY" - <<'PYCHECK'
import json
info = json.load(open("info.json"))
assert info["local"] == "verified", info["local"]
assert (info["users"], info["items"], info["interactions"]) == (3, 5, 9), info
PYCHECK

# 2. serve the trained artifact on a free port
port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
LMREC_API_KEY=e2e-secret lmrec serve artifacts/mydata --host 127.0.0.1 --port "$port" > serve.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

"$PY" - "$port" "$pid" <<'PYCHECK'
import json, sys, time, urllib.error, urllib.request
from pathlib import Path

base = f"http://127.0.0.1:{sys.argv[1]}"


def server_alive():
    stat = Path(f"/proc/{sys.argv[2]}/stat")
    if not Path("/proc").is_dir():
        return True
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def get(path):
    try:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


deadline = time.time() + 180
while True:
    try:
        if get("/health")[0] == 200:
            break
    except OSError:
        pass
    if time.time() > deadline or not server_alive():
        sys.exit("server did not become healthy: " + Path("serve.log").read_text()[-1500:])
    time.sleep(0.5)

req = urllib.request.Request(
    base + "/recommend",
    data=json.dumps({"user_id": "alice", "k": 2}).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(req, timeout=30) as r:
    answer = json.load(r)
ids = [row["item_id"] for row in answer["items"]]
assert ids and set(ids) <= {"B4", "B5"}, answer  # alice has seen B1-B3: the rest of the catalogue
print("recommend alice:", ids)

status, page = get("/ui")
if status == 404:
    print("SKIP: GET /ui answered 404: the web page route is not there yet")
    sys.exit(0)
assert status == 200, (status, page[:300])
assert all(u in page for u in ("alice", "bob", "carol")), "GET /ui lists none of the data's users"
titles = ["Trail running shoes", "Rain jacket", "Headlamp", "Hydration vest", "Wool socks"]
if any(t in page for t in titles):
    print("ui: 200, with the data's users and item titles")
else:  # the page's script fills in the recommendations: the HTML itself carries no title
    print("NOTE: GET /ui is 200 and lists the data's users, but its HTML holds no item title")
PYCHECK
echo "own data end to end: OK"
