"""Numbers a person gives cisfix — flags, the node configuration, PAUSE — are finite, positive and
bounded, and values nest only so deep: anything else is one line on stderr, exit 2, nothing changed, no
lock held, and never a hang or a traceback."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import APISERVER

CONFIG = "/etc/cisfix/config.yaml"
STATE = "/var/lib/cisfix"


def assert_one_line_refusal(node, result, *words, code=2):
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def refused_before_anything(node, cisfix, args, *words):
    """The command is refused with one line; the node and its state folder are as they were (drift's
    textfile, written after every run, goes outside the node)."""
    if "drift" in args:
        at = args.index("drift") + 1
        args = (*args[:at], "--textfile", str(node.root.parent / "cisfix.prom"), *args[at:])
    before = node.snapshot()
    result = cisfix(*args, timeout=120)  # a hang fails the test instead of blocking the run
    assert_one_line_refusal(node, result, *words)
    assert node.snapshot() == before
    assert not node.state_dir.exists(), "nothing may be created, the lock least of all"
    return result


@pytest.mark.parametrize("args, words", [
    (("fix", "--stability-window", "nan"), ("--stability-window", "finite")),
    (("fix", "--timeout", "inf", "--stability-window", "nan"), ("--timeout", "finite")),
    (("fix", "--timeout", "0"), ("--timeout", "more than 0")),
    (("fix", "--timeout", "-5"), ("--timeout", "more than 0")),
    (("fix", "--timeout", "86401"), ("--timeout", "at most 86400 (a day)")),
    (("fix", "--timeout", "ten"), ("--timeout", "expected a number of seconds")),
    (("fix", "--stability-window", "3601"), ("--stability-window", "an hour")),
    (("fix", "--timeout", "10", "--stability-window", "10"), ("--stability-window 10", "shorter than the timeout")),
    (("fix", "--wait", "nan"), ("--wait", "finite")),
    (("recover", "--wait", "1e12"), ("--wait", "a day")),
    (("edit", APISERVER, "--flag", "profiling=false", "--timeout", "nan"), ("--timeout", "finite")),
    (("rollback", "--last", "--stability-window", "-1"), ("--stability-window", "at least 0")),
    (("resume", "--timeout", "inf"), ("--timeout", "finite")),
    (("persist", "--wait", "-1"), ("--wait", "at least 0")),
    (("prune", "--wait", "inf"), ("--wait", "finite")),
    (("drift", "--random-delay", "inf"), ("--random-delay", "finite")),
    (("drift", "--random-delay", "nan"), ("--random-delay", "finite")),
    (("drift", "--random-delay", "-1"), ("--random-delay", "at least 0")),
    (("drift", "--random-delay", "86401"), ("--random-delay", "a day")),
    (("drift", "--timeout", "5", "--stability-window", "60"), ("--stability-window 60", "shorter than the timeout")),
])
def test_numbers_on_the_command_line_are_finite_positive_and_bounded(node, cisfix, args, words):
    refused_before_anything(node, cisfix, args, *words)


def test_a_zero_random_delay_and_zero_stability_window_are_honoured(node, cisfix):
    assert cisfix("drift", "--random-delay", "0", "--textfile", str(node.root / "m.prom")).returncode == 1
    assert cisfix("fix", "--dry-run", "--stability-window", "0").returncode == 1


@pytest.mark.parametrize("value", ["[" * 100_000, "{a: " * 5_000, "- " * 3_000 + "x", "[" * 65 + "]" * 65])
def test_a_deeply_nested_set_value_is_refused_in_one_line(node, cisfix, value):
    refused_before_anything(node, cisfix, ("edit", "/var/lib/kubelet/config.yaml", "--set", f"a={value}"),
                            "--set a", "nested more than 64 deep")


def test_a_set_value_nested_as_deep_as_allowed_is_written(node, cisfix):
    node.write("/etc/kubernetes/custom.yaml", b"kind: Custom\n")  # any YAML file: the kubelet's has no key `a`
    result = cisfix("edit", "/etc/kubernetes/custom.yaml", "--set", "a=" + "[" * 64 + "]" * 64)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [("audit",), ("fix",), ("drift",), ("pause", "--reason", "x"), ("history",)])
@pytest.mark.parametrize("state_dir", ["/dev/null", "/dev/null/below", "a file"])
def test_a_state_dir_that_is_not_a_directory_is_refused(node, cisfix, tmp_path, command, state_dir):
    if state_dir == "a file":
        state_dir = str(tmp_path / "state")
        (tmp_path / "state").write_text("not a folder\n")
    result = refused_before_anything(node, cisfix, ("--state-dir", state_dir, *command),
                                     state_dir, "not a directory")
    assert result.stdout == ""


@pytest.mark.parametrize("until, why", [("0s", "longer than that"), ("0m", "longer than that"),
                                        ("0.0d", "longer than that"), ("-5m", "expected a time"),
                                        ("2001-01-01T00:00Z", "has passed")])
def test_a_pause_that_would_already_be_over_is_refused(node, cisfix, until, why):
    refused_before_anything(node, cisfix, ("pause", "--reason", "x", f"--until={until}"), why)


@pytest.mark.parametrize("until, why", [("9999-12-31T12:00Z", "after 9999-12-31T00:00:00Z"),
                                        ("9999-12-31T00:00:01Z", "after 9999-12-31T00:00:00Z"),
                                        ("²h", "expected a time"), ("", "expected a time")])
def test_a_pause_no_later_run_could_read_is_refused(node, cisfix, until, why):
    refused_before_anything(node, cisfix, ("pause", "--reason", "x", f"--until={until}"), why)


def test_a_pause_until_the_latest_time_is_one_later_runs_honour(node, cisfix):
    assert cisfix("pause", "--reason", "freeze", "--until", "9999-12-31T00:00Z").returncode == 0
    result = cisfix("fix")
    assert result.returncode == 0 and result.stdout.startswith("paused by "), result.stderr
    assert "until 9999-12-31T00:00:00Z: freeze" in result.stdout


EVERY_COMMAND = (("health",), ("audit",), ("fix",), ("drift",))
GATED = (("fix",), ("drift",))  # the commands that wait for a component (health and audit do not)
CONFIGS = {
    "NaN timeout": ("gate: {timeout: .nan}", ":4", "gate.timeout: must be a finite number, not nan"),
    "infinite timeout": ("gate:\n  timeout: .inf", ":5", "finite"),
    "timeout beyond a day": ("gate: {timeout: 100000}", ":4", "100000 is greater than the maximum of 86400"),
    "NaN stability window": ("gate: {stabilityWindow: .nan}", ":4", "finite"),
    "window as long as the timeout": ("gate: {timeout: 60, stabilityWindow: 60}", "gate.stabilityWindow 60",
                                      "shorter than the timeout", GATED),
    "infinite flap window": ("drift: {flapWindowHours: .inf}", ":4", "finite"),
    "huge retention": ("retention: {days: 1.0e+300}", ":4", "maximum"),
    "probe timeoutSeconds": ("components:\n  kube-apiserver:\n    health:\n      url: https://127.0.0.1:6443/livez\n"
                             "      timeoutSeconds: abc", ":8", "unknown field"),
    "port out of range": ("components:\n  kube-apiserver:\n    health: {url: 'https://127.0.0.1:70000/livez'}",
                          ":6", "port, if given, from 1 to 65535"),
    "port of nothing": ("components:\n  kubelet:\n    health: {url: 'http://127.0.0.1:/healthz'}", ":6", "URL"),
    "portFlag not a flag": ("components:\n  kubelet:\n    health: {url: 'http://127.0.0.1/healthz', portFlag: '--x y'}",
                            ":6", "portFlag"),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_odd_numbers_and_health_settings_in_the_node_config_are_refused_at_load(node, cisfix, case):
    text, where, why, *commands = CONFIGS[case]
    config = node.path(CONFIG)
    config.write_text(config.read_text() + text + "\n")
    for args in (commands or [EVERY_COMMAND])[0]:
        result = refused_before_anything(node, cisfix, args, why)
        assert where in result.stderr and (str(config) in result.stderr or "gate." in result.stderr)


# The node's API server: a process of its own that answers 200 on every path (only an answer from the
# component's own process counts), so that only the manifest's own probes decide.
API_SERVER = """
import http.server, sys
class Healthy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def api_server(node, tmp_path):
    """(program, endpoint) of a running API server of the node: root's process in its static pod's
    container cgroup, as the kubelet starts it (`cisfix.identity`)."""
    from node_processes import pod_process, stop

    program = tmp_path / "kube-apiserver"
    program.write_text(API_SERVER)
    process = pod_process(node.root, "kube-system", "kube-apiserver", [sys.executable, str(program)],
                          stdout=subprocess.PIPE, text=True)
    port = process.stdout.readline().strip()  # printed once it listens
    yield str(program), f"http://127.0.0.1:{port}/livez"
    stop(process)


def with_probes_on(node, api_server, manifest: str) -> None:
    """The API server's endpoint and every probe of its manifest on the running API server (as kubeadm's
    probes dial the node's address), so that only the manifest's probes decide."""
    program, endpoint = api_server
    config = node.path(CONFIG)
    config.write_text(config.read_text() + f"proc: /proc\ncomponents:\n  kube-apiserver:\n"
                                           f"    process: '{program}'\n    health: {{url: '{endpoint}'}}\n")
    port = endpoint.split(":")[2].split("/")[0]
    node.write(APISERVER, manifest.replace("host: 10.0.0.10", "host: 127.0.0.1").replace("port: 6443", f"port: {port}")
               .replace("scheme: HTTPS", "scheme: HTTP").encode())


@pytest.mark.parametrize("old, new, why", [
    ("      timeoutSeconds: 15\n", "      timeoutSeconds: abc\n", "probe timeoutSeconds 'abc' is not a number"),
    ("      timeoutSeconds: 15\n", "      timeoutSeconds: .nan\n", "must be a finite number"),
    ("      timeoutSeconds: 15\n", "      timeoutSeconds: 86400\n", "at most 60 (a minute)"),
    ("        port: 6443\n", "        port: nosuch\n", "probe port 'nosuch' is not a port of the container"),
    ("        port: 6443\n", "        port: 70000\n", "probe port 70000 is not a port number (1-65535)"),
])
def test_a_static_pod_probe_no_kubelet_would_run_is_named_unhealthy(node, cisfix, api_server, old, new, why):
    manifest = node.read(APISERVER).decode()
    assert old in manifest
    with_probes_on(node, api_server, manifest.replace(old, new, 1))  # the first probe: the liveness probe
    result = cisfix("health", "--component", "kube-apiserver", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"kube-apiserver: UNHEALTHY: kube-apiserver livenessProbe: {node.root}{APISERVER}: ") \
        and why in line, line


def test_a_missing_credential_is_named_as_the_operator_reaches_it(node, cisfix):
    config = node.path(CONFIG)
    config.write_text(config.read_text() + "components:\n  kube-apiserver:\n    health: {url: 'https://127.0.0.1:6443"
                      "/readyz', caFile: /etc/kubernetes/pki/ca.crt}\n")
    result = cisfix("health", "--component", "kube-apiserver", timeout=60)
    assert result.returncode == 2
    assert result.stdout == (f"kube-apiserver: UNHEALTHY: https://127.0.0.1:6443/readyz: CA file "
                             f"{node.root}/etc/kubernetes/pki/ca.crt not found\n")


def test_the_same_probes_as_kubeadm_writes_them_are_healthy(node, cisfix, api_server):
    """The set-up above without the odd value: the refusals above are the probes' own."""
    with_probes_on(node, api_server, node.read(APISERVER).decode())
    result = cisfix("health", "--component", "kube-apiserver", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("kube-apiserver: healthy")


@pytest.mark.parametrize("options, call, why", [
    ({}, {"timeout": float("nan")}, "gate timeout nan: must be a finite number"),
    ({}, {"timeout": float("inf")}, "gate timeout inf: must be a finite number"),
    ({"lock_wait": float("nan")}, {}, "for the run lock: must be a finite number"),
    ({"lock_wait": -1.0}, {}, "for the run lock: must be at least 0"),
])
def test_the_python_api_refuses_the_same_numbers(node, options, call, why):
    from cisfix.api import Runner

    before = node.snapshot()
    out = Runner(str(node.root), **options).apply_remediation_with_health_gate(
        APISERVER, "--profiling=", "false", "1.2.15", **call)
    assert out["success"] is False and out["status"] == "REMEDIATION_FAILED" and why in out["reason"], out
    assert node.snapshot() == before and not (node.state_dir / "HALT").exists()


@pytest.mark.parametrize("nesting", ["[" * 5_000, "\n" + "- " * 3_000 + "x"])
def test_a_node_config_nested_thousands_deep_is_refused_in_one_line(node, cisfix, nesting):
    config = node.path(CONFIG)
    config.write_text(config.read_text() + "nodeTypes: " + nesting + "\n")
    for args in (("audit",), ("fix",), ("health",)):
        refused_before_anything(node, cisfix, args, f"{config}:1", "nested too deep")


def test_a_node_file_nested_thousands_deep_is_bad_input_not_a_crash(node, cisfix):
    kubelet = "/var/lib/kubelet/config.yaml"
    node.write(kubelet, node.read(kubelet) + b"deep: " + b"[" * 5_000 + b"\n")
    before = node.snapshot()
    edit = cisfix("edit", kubelet, "--set", "readOnlyPort=0")  # planned under the lock, as every edit is
    assert_one_line_refusal(node, edit, kubelet, "nested too deep")
    assert node.snapshot() == before
    audit = cisfix("audit", "--check", "4.2.4", "--format", "json")
    assert audit.returncode == 2 and "Traceback" not in audit.stderr
    (result,) = json.loads(audit.stdout)["results"]
    assert result["status"] == "ERROR"


@pytest.mark.parametrize("option, words", [
    ("eventRecordQPS=.inf", ("--set eventRecordQPS", "only finite numbers")),
    ("x=1e309", ("--set x", "only finite numbers")),
    ("a=.nan", ("--set a", "only finite numbers")),
    ("evictionHard={memory.available: [1, -.inf]}", ("--set evictionHard", "only finite numbers")),
    ("authentication.anonymous.enabled", ("--set authentication.anonymous.enabled", "--set needs PATH=VALUE")),
    (".".join(["a"] * 1000) + "=1", ("--set a.a.a", "1000 keys, more than the 32")),
])
def test_a_set_value_no_configuration_holds_is_refused_in_one_line(node, cisfix, option, words):
    refused_before_anything(node, cisfix, ("edit", "/var/lib/kubelet/config.yaml", "--set", option), *words)


def test_an_unset_path_too_deep_is_refused_in_one_line(node, cisfix):
    refused_before_anything(node, cisfix, ("edit", "/var/lib/kubelet/config.yaml", "--unset", "a." * 40 + "a"),
                            "--unset a.a", "41 keys, more than the 32")


@pytest.mark.parametrize("option", ["--flag", "--flag-add", "--set"])
def test_an_argument_that_is_no_utf8_is_refused_in_one_line(node, tmp_path, option):
    """A shell's `$'\\xff'` reaches Python's argv as a surrogate escape, which no file can hold."""
    import subprocess
    import sys

    before = node.snapshot()
    result = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(node.root), "edit", APISERVER,
                             option, b"a=\xff".decode("utf-8", "surrogateescape")], capture_output=True, text=True,
                            timeout=120)
    assert_one_line_refusal(node, result, "\\xff", "not UTF-8 text")
    assert node.snapshot() == before and not node.state_dir.exists()
