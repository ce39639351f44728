#!/usr/bin/env bash
# Audit the project's installed Python dependencies for known vulnerabilities (pip-audit).
#
#   scripts/pip_audit.sh            audit .venv's packages; exit 0 only if every one of them
#                                   was checked against a vulnerability source and none is
#                                   vulnerable (apart from accepted findings)
#
# A run that could not check a package (vulnerability service unreachable, package unknown
# to it) FAILS: an audit that audited nothing must not pass.
#
# Environment:
#   PIP_AUDIT_SERVICES   services to try, in order, until one audits everything (default
#                        "pypi osv": PyPI's JSON API, then api.osv.dev)
#   PIP_AUDIT_IGNORE     accepted findings, space-separated vulnerability ids (GHSA-..., PYSEC-...,
#                        CVE-...); document each one in docs/reliability.md
#   PIP_AUDIT_FALLBACK   "pypi-latest": if no service could audit, check each package that is at
#                        its latest release against the advisories PyPI lists for that release
#                        (/pypi/<name>/json); packages not at their latest release stay unaudited
#                        and make the run fail. Off by default.
#   PIP_AUDIT_VERSION    pip-audit version to install (default pinned below)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${NUDGE_VENV:-$root/.venv}"
tool="$root/.cache/pip-audit"
out="$root/var/pip-audit"
version="${PIP_AUDIT_VERSION:-2.10.1}"
services="${PIP_AUDIT_SERVICES:-pypi osv}"

[ -x "$venv/bin/python" ] || { echo "pip_audit: no venv at $venv (run ./dev setup)" >&2; exit 1; }
mkdir -p "$out"

# pip-audit lives in a venv of its own: its dependencies are not the project's.
if [ ! -x "$tool/bin/pip-audit" ] || ! "$tool/bin/pip-audit" --version | grep -q " $version\$"; then
  python3 -m venv "$tool"
  "$tool/bin/python" -m pip install -q --upgrade pip
  "$tool/bin/python" -m pip install -q "pip-audit==$version"
fi

# What is installed, exactly (pinned), minus the project itself (editable, not on an index).
"$venv/bin/python" -m pip freeze --exclude-editable | grep -v '^-e ' > "$out/requirements.txt"
total="$(grep -c . "$out/requirements.txt" || true)"
[ "$total" -gt 0 ] || { echo "pip_audit: found no installed packages in $venv" >&2; exit 1; }

ignore_args=()
for id in ${PIP_AUDIT_IGNORE:-}; do ignore_args+=(--ignore-vuln "$id"); done

# Reads a pip-audit JSON report: prints "audited skipped vulnerable" and the details.
summarize() {
  "$tool/bin/python" - "$1" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
deps = report["dependencies"]
skipped = [d for d in deps if "skip_reason" in d]
vulnerable = [d for d in deps if d.get("vulns")]
print(len(deps) - len(skipped), len(skipped), len(vulnerable))
for d in skipped[:5]:
    print(f"  not audited: {d['skip_reason']}", file=sys.stderr)
if len(skipped) > 5:
    print(f"  ... and {len(skipped) - 5} more not audited", file=sys.stderr)
for d in vulnerable:
    for v in d["vulns"]:
        fixed = ", ".join(v.get("fix_versions", [])) or "no fix"
        print(f"  VULNERABLE {d['name']} {d['version']}: {v['id']} (fixed in: {fixed})",
              file=sys.stderr)
PY
}

for service in $services; do
  report="$out/report-$service.json"
  rm -f "$report"
  echo "pip_audit: auditing $total packages with pip-audit $version (service: $service)"
  rc=0
  "$tool/bin/pip-audit" -r "$out/requirements.txt" --no-deps --disable-pip \
    --vulnerability-service "$service" --progress-spinner off --format json \
    --output "$report" ${ignore_args[@]+"${ignore_args[@]}"} 2> "$out/stderr-$service.txt" || rc=$?
  if [ ! -s "$report" ]; then
    echo "pip_audit: $service: no report (exit $rc); last error:" >&2
    grep -E "Error|error" "$out/stderr-$service.txt" | tail -1 | cut -c1-400 >&2 || true
    continue
  fi
  read -r audited skipped vulnerable < <(summarize "$report")
  echo "pip_audit: $service: audited $audited of $total, not audited $skipped, vulnerable $vulnerable"
  if [ "$vulnerable" -gt 0 ]; then
    echo "pip_audit: FAILED: vulnerable dependencies (upgrade, or accept with PIP_AUDIT_IGNORE)" >&2
    exit 1
  fi
  if [ "$audited" -eq "$total" ] && [ "$skipped" -eq 0 ]; then
    echo "pip_audit: OK: all $total packages audited, no known vulnerabilities"
    exit 0
  fi
done

if [ "${PIP_AUDIT_FALLBACK:-}" = "pypi-latest" ]; then
  echo "pip_audit: fallback: PyPI's advisories for packages at their latest release"
  "$tool/bin/python" - "$out/requirements.txt" ${PIP_AUDIT_IGNORE:-} <<'PY'
import json, sys, urllib.request

lines = [l.strip() for l in open(sys.argv[1]) if "==" in l]
accepted = set(sys.argv[2:])
audited, unaudited, vulnerable = [], [], []
for line in lines:
    name, version = line.split("==", 1)
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=20) as r:
            data = json.load(r)
    except Exception as exc:
        unaudited.append(f"{name} {version}: {exc}")
        continue
    latest = data["info"]["version"]
    if latest != version or "vulnerabilities" not in data:
        unaudited.append(f"{name} {version}: not the latest release ({latest})")
        continue
    audited.append(name)
    for v in data["vulnerabilities"]:
        ids = {v["id"], *v.get("aliases", [])}
        if not ids & accepted and not v.get("withdrawn"):
            vulnerable.append(f"{name} {version}: {v['id']} (fixed in: {v.get('fixed_in')})")
print(f"pip_audit: fallback: audited {len(audited)} of {len(lines)}, "
      f"not audited {len(unaudited)}, vulnerable {len(vulnerable)}")
for line in unaudited:
    print(f"  not audited: {line}", file=sys.stderr)
for line in vulnerable:
    print(f"  VULNERABLE {line}", file=sys.stderr)
sys.exit(1 if vulnerable or unaudited or not audited else 0)
PY
  exit $?
fi

echo "pip_audit: FAILED: no vulnerability service could audit the dependencies" >&2
echo "pip_audit: (reports and errors in $out)" >&2
exit 1
