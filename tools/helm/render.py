#!/usr/bin/env python3
"""Lint and render a Helm chart without the helm binary, through helm-python-sdk (Helm's own
Go SDK behind a C ABI: the same engine as `helm lint --strict` and `helm template`).

    python3 tools/helm/render.py CHART_DIR [VALUES_JSON] > out.json

Prints one JSON object: {"helm": version, "lint": {...}, "manifests": {template path: text}}.
Exit 3 when helm-python-sdk is not installed (callers skip), 1 when the chart does not render.
"""

import json
import sys


def main() -> int:
    try:
        import helm_python as helm
    except ImportError as e:  # the caller prints the skip reason
        print(f"helm-python-sdk is not installed: {e}", file=sys.stderr)
        return 3
    chart_dir = sys.argv[1]
    values = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    report = helm.lint(chart_dir, values, strict=True, namespace="fleetwave-system")
    with helm.Chart.load(chart_dir) as chart:
        try:
            manifests = chart.render(values, name="fleetwave", namespace="fleetwave-system")
        except helm.HelmError as e:
            print(f"render failed: {e}", file=sys.stderr)
            return 1
    json.dump(
        {"helm": helm.helm_sdk_version(), "lint": report, "manifests": manifests},
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
